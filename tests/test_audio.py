"""Audio loading: formats, rates, channels, bit depths, and every bad-file case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import write_wav
from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.errors import AudioError


def tone(rate: int, seconds: float = 1.0, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [
        ("WAV", "PCM_16", 8000),
        ("WAV", "PCM_24", 44100),
        ("WAV", "PCM_32", 48000),
        ("WAV", "FLOAT", 22050),
        ("FLAC", "PCM_16", 16000),
        ("FLAC", "PCM_24", 32000),
        ("OGG", "VORBIS", 48000),
    ],
)
def test_formats_resample_to_16k(tmp_path: Path, fmt: str, subtype: str, rate: int) -> None:
    path = tmp_path / f"t.{fmt.lower()}"
    sf.write(str(path), tone(rate), rate, format=fmt, subtype=subtype)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - SAMPLE_RATE) <= 2
    # A real resampler keeps the 1 kHz tone clean: nearly all energy stays at 1 kHz.
    spec = np.abs(np.fft.rfft(x[2000:-2000])) ** 2
    freqs = np.fft.rfftfreq(len(x) - 4000, 1 / SAMPLE_RATE)
    near = spec[np.abs(freqs - 1000) < 20].sum()
    assert near / spec.sum() > 0.99


def test_stereo_is_mixed_to_mono(tmp_path: Path) -> None:
    left = tone(16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    x = load_audio(write_wav(tmp_path / "s.wav", stereo))
    np.testing.assert_allclose(x, left / 2, atol=1e-4)


def test_resampling_is_not_linear_interpolation(tmp_path: Path) -> None:
    # A 7 kHz tone at 44.1 kHz: linear interpolation aliases it badly, soxr does not.
    x = load_audio(write_wav(tmp_path / "hi.wav", tone(44100, freq=7000.0), 44100))
    spec = np.abs(np.fft.rfft(x[2000:-2000])) ** 2
    freqs = np.fft.rfftfreq(len(x) - 4000, 1 / SAMPLE_RATE)
    assert spec[np.abs(freqs - 7000) < 20].sum() / spec.sum() > 0.999


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="nothere.wav: file not found"):
        load_audio(tmp_path / "nothere.wav")


def test_not_audio(tmp_path: Path) -> None:
    p = tmp_path / "text.wav"
    p.write_text("hello, I am not a wav file\n")
    with pytest.raises(AudioError, match="text.wav: not readable as audio"):
        load_audio(p)


def test_truncated_wav(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", tone(16000, 2.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20000])
    with pytest.raises(AudioError, match="cut.wav: truncated"):
        load_audio(cut)


def test_truncated_flac(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = tmp_path / "full.flac"
    sf.write(str(full), (0.3 * rng.standard_normal(64000)).astype(np.float32), 16000)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(AudioError, match="cut.flac: .*(truncated|corrupt|not readable)"):
        load_audio(cut)


def test_empty_file(tmp_path: Path) -> None:
    p = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="empty.wav: empty"):
        load_audio(p)


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match="zero.wav"):
        load_audio(p)


def test_silent_file(tmp_path: Path) -> None:
    p = write_wav(tmp_path / "silence.wav", np.zeros(32000, dtype=np.float32))
    with pytest.raises(AudioError, match="silence.wav: silent"):
        load_audio(p)
