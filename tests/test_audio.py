"""Audio loading: formats (the one rule: libsndfile, then FFmpeg), rates, channels, bit
depths, every bad-file case, and the bounds (rate, declared and decoded duration)."""

from __future__ import annotations

import dataclasses
import random
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import FIXTURES, SENTENCES, VOICES, speak, write_wav
from vggvox import audio, audio_ffmpeg
from vggvox.audio import (
    BLOCK,
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


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any decoding fails the test: what is refused from the header never starts."""
    def started(*args: object) -> Iterator[tuple[np.ndarray, int]]:
        raise AssertionError("decoding started")

    monkeypatch.setattr(audio, "_sndfile_blocks", started)
    monkeypatch.setattr(audio_ffmpeg, "blocks", started)


def test_an_8_hz_header_is_refused_before_decoding(tmp_path: Path, no_decoding: None) -> None:
    # Issue 20: 30 KB declaring 8 Hz took the web bridge to 811 MB while resampled.
    p = tmp_path / "8hz.wav"
    sf.write(str(p), tone(8, 1875.0, 1.0), 8, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"8hz.wav: sample rate 8 Hz is outside the 8000\.\."):
        load_audio(p)


def many_channels(path: Path, channels: int, seconds: float, rate: int = 8000,
                  subtype: str = "PCM_U8") -> Path:
    """A WAV of ``channels`` channels, each a 300 Hz tone."""
    x = np.repeat(tone(rate, seconds, 300.0)[:, None], channels, axis=1)
    sf.write(str(path), x, rate, subtype=subtype)
    return path


def test_a_thousand_channels_are_refused_from_the_header(tmp_path: Path,
                                                         no_decoding: None) -> None:
    # A 31.7 MB 1024-channel PCM_U8 WAV cost the bridge 123 MB in one decode: a block
    # was 65,536 frames of every channel.
    p = many_channels(tmp_path / "wide.wav", 1024, 0.1)
    with pytest.raises(AudioError) as e:
        load_audio(p, max_seconds=120)
    assert str(e.value) == f"{p}: 1024 channels, outside the 1..32 taken"


def test_a_block_holds_at_most_BLOCK_samples_whatever_the_channels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = many_channels(tmp_path / "32.wav", 32, 10.0, subtype="PCM_16")
    asked: list[int] = []
    read = sf.SoundFile.read

    def spy(self: sf.SoundFile, frames: int = -1, *args: object, **kw: object) -> object:
        asked.append(frames * self.channels)
        return read(self, frames, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    x = load_audio(p, max_seconds=120)
    assert asked and max(asked) <= BLOCK, asked[:3]
    assert abs(len(x) - 10 * SAMPLE_RATE) <= 2 and dbfs_of(x) > -10  # the mean of 32 tones


def dbfs_of(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x)))))


def two_hours_of_flac(path: Path) -> Path:
    """Issue 20's bomb: 2 h of audio (silence) in a 180 KB FLAC."""
    with sf.SoundFile(str(path), "w", 8000, 1, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros(8000 * 60, dtype=np.int16)
        for _ in range(120):
            f.write(block)
    return path


def test_a_long_declared_duration_is_refused_from_the_header(tmp_path: Path,
                                                            no_decoding: None) -> None:
    p = two_hours_of_flac(tmp_path / "2h.flac")
    assert p.stat().st_size < 400_000
    with pytest.raises(AudioError, match=r"2h.flac: 7200.0 s of audio, more than the 120 s"):
        load_audio(p, max_seconds=120)


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


# ------------------------------------------------------------- damaged and crafted files

def no_decoder_m4a(good: Path, path: Path) -> Path:
    """``good`` (AAC in MP4) with its codec named as none FFmpeg knows: the sample
    entry's fourcc and the esds object type changed, as a few flipped bytes can do."""
    data = bytearray(good.read_bytes())
    at = data.find(b"mp4a")
    data[at:at + 4] = b"xxxx"
    esds = data.find(b"esds")
    object_type = data.find(bytes.fromhex("0480808017"), esds) + 5
    assert data[object_type] == 0x40  # MPEG-4 audio
    data[object_type] = 0xC0  # a private one
    path.write_bytes(bytes(data))
    return path


def test_an_m4a_without_a_decoder_is_refused_in_one_line(tmp_path: Path) -> None:
    # `vggvox-client replay crash.m4a` printed an AttributeError's traceback.
    good = encode_with_pyav(tone(16000, 2.0, 300.0), tmp_path / "good.m4a", "aac")
    crash = no_decoder_m4a(good, tmp_path / "crash.m4a")
    for read in (audio_info, load_audio):
        with pytest.raises(AudioError) as e:
            read(crash)
        assert str(e.value).startswith(f"{crash}: no decoder for its audio stream (a "
                                       "QuickTime / MOV file)"), e.value
        assert "\n" not in str(e.value)


def flipped(data: bytes, rng: random.Random, i: int) -> bytes:
    """``data`` truncated (every fourth), else with a few bytes changed, in its head,
    its tail (an MP4's index) or anywhere."""
    if i % 4 == 3:
        return data[:rng.randrange(1, len(data))]
    b = bytearray(data)
    lo, hi = rng.choice([(0, 600), (len(b) - 1200, len(b)), (0, len(b))])
    for _ in range(rng.choice([1, 2, 4, 10])):
        b[rng.randrange(max(0, lo), hi)] = rng.randrange(256)
    return bytes(b)


def test_damaged_files_give_audio_errors_only(tmp_path: Path) -> None:
    """A few dozen byte-flipped and truncated files of each compressed kind: whatever
    the readers make of them, only AudioError comes out (the web page answers it
    400, replay prints it in one line)."""
    x = tone(16000, 3.0, 300.0)
    sources = [encode_with_pyav(x, tmp_path / "a.m4a", "aac"),
               encode_with_pyav(x, tmp_path / "a.webm", "libopus")]
    for kind in ("mp3", "flac"):
        sf.write(str(tmp_path / f"a.{kind}"), x, 16000, format=kind.upper())
        sources.append(tmp_path / f"a.{kind}")
    rng = random.Random(2)
    escaped = []
    for src in sources:
        data = src.read_bytes()
        for i in range(40):
            p = tmp_path / f"{i}-{src.name}"
            p.write_bytes(flipped(data, rng, i))
            for read in (audio_info, load_audio):
                try:
                    read(p)
                except AudioError:
                    pass
                except Exception as e:  # what the test looks for
                    escaped.append(f"{p.name} {read.__name__}: {type(e).__name__}: {e}")
    assert not escaped, escaped


def many_samples_m4a(good: Path, path: Path, samples: int) -> Path:
    """``good`` (AAC in MP4) whose sample table lists ``samples`` samples of one byte
    (and declares the same 2 s): 4 bytes of the file each, 24 of FFmpeg's index."""
    containers = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}

    def parse(buf: bytes) -> list[list[object]]:
        boxes, i = [], 0
        while i < len(buf):
            size, name = struct.unpack(">I4s", buf[i:i + 8])
            body = buf[i + 8:i + size]
            boxes.append([name, parse(body) if name in containers else body])
            i += size
        return boxes

    tables = {b"stsz": struct.pack(">III", 0, 0, samples) + b"\0\0\0\1" * samples,
              b"stts": struct.pack(">IIII", 0, 1, samples, 1),
              b"stsc": struct.pack(">IIIII", 0, 1, 1, samples, 1)}

    def build(boxes: list[list[object]]) -> bytes:
        out = b""
        for name, body in boxes:
            assert isinstance(name, bytes)
            raw = build(body) if isinstance(body, list) else tables.get(name, body)
            assert isinstance(raw, bytes)
            out += struct.pack(">I4s", 8 + len(raw), name) + raw
        return out

    path.write_bytes(build(parse(good.read_bytes())))
    return path


def test_ffmpeg_s_tables_are_capped(tmp_path: Path) -> None:
    # A 28 MB M4A of 7 million 1-byte samples that says 3 s cost 105 MB inside av.open,
    # before any bound: 2.1 million (8.4 MB) want a sample-size table over the cap.
    good = encode_with_pyav(tone(16000, 2.0, 300.0), tmp_path / "good.m4a", "aac")
    crafted = many_samples_m4a(good, tmp_path / "index.m4a", 2_100_000)
    assert crafted.stat().st_size < 9 << 20
    with pytest.raises(AudioError, match=r"index.m4a: refused: its tables would need more "
                                         r"than 8 MB in one piece"):
        audio_info(crafted)
    assert audio_ffmpeg.CAPPED
    assert len(load_audio(good)) > SAMPLE_RATE  # what is not crafted still reads
