"""Audio loading: formats (the one rule: libsndfile, then FFmpeg), rates, channels, bit
depths, every bad-file case, and the bounds (rate, declared and decoded duration)."""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import FIXTURES, SENTENCES, VOICES, speak, write_wav
from vggvox import audio_ffmpeg
from vggvox.audio import (
    SAMPLE_RATE,
    NotAudioError,
    audio_info,
    join,
    load_audio,
    to_mono_16k,
)
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


# ---------------------------------------------------------------- the format rule, and bounds

def speech(tmp_path: Path) -> np.ndarray:
    """A real speech clip (the shared fixtures), else an espeak-ng sentence, at 16 kHz."""
    clips = sorted(FIXTURES.glob("ls-3005__*.wav")) if FIXTURES.is_dir() else []
    wav = clips[0] if clips else speak(SENTENCES[0], VOICES["alice"], tmp_path / "voice.wav")
    return load_audio(wav)


def encode_with_pyav(x: np.ndarray, path: Path, codec: str, rate: int = 48000) -> Path:
    """Encode 16 kHz float audio with FFmpeg's encoders (PyAV) into ``path``'s container."""
    import av

    x = soxr.resample(x, SAMPLE_RATE, rate, quality="HQ").astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stereo = np.stack([x, x])  # planar: channels x samples
        size = 960
        for i in range(0, stereo.shape[1], size):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, i:i + size]),
                                               format="fltp", layout="stereo")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 4000) -> float:
    """The highest normalised correlation of ``a`` and ``b`` over lags up to ``max_lag``
    samples (codecs delay the audio by their priming)."""
    n = min(len(a), len(b)) - max_lag
    ref = a[max_lag:n] - a[max_lag:n].mean()
    best = 0.0
    for lag in range(-max_lag, max_lag + 1, 1):
        seg = b[max_lag + lag:n + lag]
        seg = seg - seg.mean()
        best = max(best, float(ref @ seg / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12)))
    return best


@pytest.mark.parametrize("kind", ["mp3", "opus", "m4a", "webm"])
def test_compressed_formats_load_as_the_original(tmp_path: Path, kind: str) -> None:
    original = speech(tmp_path)
    path = tmp_path / f"voice.{kind}"
    if kind == "mp3":
        sf.write(str(path), original, SAMPLE_RATE, format="MP3")
    elif kind == "opus":
        sf.write(str(path), original, SAMPLE_RATE, format="OGG", subtype="OPUS")
    else:  # what libsndfile cannot read: AAC in MP4, Opus in WebM, made by FFmpeg
        encode_with_pyav(original, path, "aac" if kind == "m4a" else "libopus")
    info = audio_info(path)
    assert info.reader == ("ffmpeg" if kind in ("m4a", "webm") else "libsndfile")
    assert info.seconds is not None and abs(info.seconds - len(original) / SAMPLE_RATE) < 0.2
    x = load_audio(path, max_seconds=120)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - len(original)) < 0.1 * SAMPLE_RATE
    assert best_correlation(original, x) > 0.9, kind


@pytest.mark.parametrize(("content", "what"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "it is a PNG image"),
    (b"a.wav alice\nb.wav bob\n", "it is a text file"),
    (bytes(range(256)) * 4, "neither libsndfile nor FFmpeg knows its format"),
])
def test_what_is_not_audio_is_refused_in_one_line(tmp_path: Path, content: bytes,
                                                  what: str) -> None:
    p = tmp_path / "upload.m4a"  # the suffix does not matter: the content decides
    p.write_bytes(content)
    for read in (audio_info, load_audio):
        with pytest.raises(NotAudioError, match=f"upload.m4a: not readable as audio: {what}"):
            read(p)


def test_a_broken_file_is_audio_but_not_usable(tmp_path: Path) -> None:
    # Truncated is an AudioError, not a NotAudioError: callers that tell audio from
    # other files (replay: a file or a list) must not take it for a list.
    full = write_wav(tmp_path / "full.wav", tone(16000, 2.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20000])
    with pytest.raises(AudioError, match="truncated") as e:
        audio_info(cut)
    assert not isinstance(e.value, NotAudioError)


def test_an_8_hz_header_is_refused_before_decoding(tmp_path: Path) -> None:
    # Issue 20: 30 KB declaring 8 Hz took the web bridge to 811 MB while resampled.
    p = tmp_path / "8hz.wav"
    sf.write(str(p), tone(8, 1875.0, 1.0), 8, subtype="PCM_16")
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=r"8hz.wav: sample rate 8 Hz is outside the 8000\.\."):
        load_audio(p)
    assert time.perf_counter() - t0 < 0.1


def two_hours_of_flac(path: Path) -> Path:
    """Issue 20's bomb: 2 h of audio (silence) in a 180 KB FLAC."""
    with sf.SoundFile(str(path), "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 60, dtype=np.int16)
        for _ in range(120):
            f.write(block)
    return path


def test_a_long_declared_duration_is_refused_from_the_header(tmp_path: Path) -> None:
    p = two_hours_of_flac(tmp_path / "2h.flac")
    assert p.stat().st_size < 400_000
    t0 = time.perf_counter()
    with pytest.raises(AudioError, match=r"2h.flac: 7200.0 s of audio, more than the 120 s"):
        load_audio(p, max_seconds=120)
    assert time.perf_counter() - t0 < 0.1


def test_a_header_that_lies_is_caught_while_decoding(tmp_path: Path) -> None:
    p = two_hours_of_flac(tmp_path / "2h.flac")
    data = bytearray(p.read_bytes())
    # STREAMINFO's 36-bit total sample count (bytes 21-25 of the file) set to 0: "unknown".
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    liar = tmp_path / "liar.flac"
    liar.write_bytes(bytes(data))
    assert audio_info(liar).seconds is None
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match="liar.flac: more than the 120 s of audio taken"):
            load_audio(liar, max_seconds=120)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 120 s at 16 kHz is 7.7 MB of float32; the whole file would be 460 MB.
    assert peak < 20e6


def test_ffmpeg_decoding_stops_at_the_bound_too(tmp_path: Path) -> None:
    original = speech(tmp_path)
    p = encode_with_pyav(np.tile(original, 3), tmp_path / "long.m4a", "aac")
    info = audio_info(p)
    assert info.seconds is not None and info.seconds > 6
    with pytest.raises(AudioError, match=r"long.m4a: .* more than the 5 s"):
        load_audio(p, max_seconds=5)
    # As if the header said nothing: the decoding loop stops it.
    blind = dataclasses.replace(info, seconds=None)
    with pytest.raises(AudioError, match="long.m4a: more than the 5 s of audio taken"):
        join(blind, audio_ffmpeg.blocks(blind), 5)


def test_a_bound_changes_nothing_below_it(tmp_path: Path) -> None:
    x = (0.3 * np.random.default_rng(1).standard_normal(44100 * 3)).astype(np.float32)
    p = write_wav(tmp_path / "n.wav", np.stack([x, -x / 2], axis=1), 44100)
    np.testing.assert_array_equal(load_audio(p, max_seconds=120), load_audio(p))
    np.testing.assert_array_equal(load_audio(p), to_mono_16k(sf.read(str(p),
                                                             dtype="float32")[0], 44100))
