"""Audio file loading: one format rule for every command, 16 kHz mono out, bounded.

**The format rule** (every command that takes an audio file uses it, through
:func:`load_audio` or :func:`audio_info`). A file is audio when, judged by its
content and never by its suffix,

1. libsndfile reads it: WAV (also RF64, W64), FLAC, OGG (Vorbis, Opus), MP3,
   AIFF, CAF, AU and the rest of ``soundfile.available_formats()``; or else
2. one of FFmpeg's audio containers (through PyAV, bundled in its wheel) holds
   an audio stream in it: M4A/MP4 (AAC, ALAC), WebM/Matroska (Opus, Vorbis),
   raw AAC (ADTS), AC-3, WMA (ASF), AMR, ... (``FFMPEG_CONTAINERS``).

Anything else is refused with :class:`NotAudioError`, one line that names the
file and, when it is recognisable, what it is (a text file, an image, ...); a
file that is audio but broken (truncated, corrupt, empty, silent, too long)
gets the parent :class:`AudioError`. So a caller that must tell "audio" from
"something else" (``replay`` telling a file from a list) asks
:func:`audio_info` and catches ``NotAudioError``.

**Bounds.** A sample rate outside ``MIN_RATE``..``MAX_RATE``, or more than
``MAX_CHANNELS`` channels, is refused from the header, before decoding; with
``max_seconds``, so is a declared duration over it. Decoding then goes a block
of at most ``BLOCK`` samples (all channels together) at a time, mixed to mono
and resampled as a stream (soxr, the SoX resampler, never linear
interpolation), and stops as soon as the audio passes ``max_seconds``, since a
header can lie: the memory a file can cost is bounded by ``max_seconds`` at
16 kHz, whatever it declares. (FFmpeg's own tables: ``audio_ffmpeg``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from vggvox.errors import AudioError

SAMPLE_RATE = 16000
# Below this RMS level (dBFS) a file holds no usable speech. The quietest real
# speech in the development set sits near -49 dBFS; digital silence and dither
# are far lower.
SILENCE_DBFS = -65.0
MIN_RATE = 8000
"""Lowest sample rate taken: below it there is no speech band left (and an 8 Hz
header would turn a few kilobytes into gigabytes of resampled audio)."""
MAX_RATE = 384000
"""Highest sample rate taken (the highest that audio hardware records)."""

MAX_CHANNELS = 32
"""Most channels taken (ambisonics to 4th order, 22.2 surround): each block's
memory grows with the channels, and speech needs one."""
BLOCK = 65536
"""Samples (frames x channels) decoded at a time by libsndfile: 256 KB of float32,
whatever the channel count."""

FFMPEG_CONTAINERS = ("mov,matroska,aac,mp3,ogg,wav,flac,w64,aiff,caf,amr,ac3,eac3,asf,au,"
                     "tta,wv,ape,mpc,mpc8,shn,loas,dts,truehd,mlp,dsf")
"""The FFmpeg demuxers probed for what libsndfile cannot read: audio containers
only, none that opens other files or URLs named inside it (playlists, concat)."""

# libsndfile logs "data : 128000 (should be 29956)" when a WAV header promises
# more data than the file holds.
_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# libsndfile's frame count for a stream of unknown length (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 1 << 62
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
          (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
          (b"\x1f\x8b", "gzip data"), (b"\x7fELF", "an ELF executable"),
          (b"SQLite format 3", "an SQLite database"))


class NotAudioError(AudioError):
    """Neither libsndfile nor FFmpeg's audio containers know the file: not audio at all
    (as opposed to audio that is broken)."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding."""

    path: str
    format: str
    """e.g. ``WAV PCM_16``, ``OGG OPUS``, ``MP3``, ``mov,mp4,m4a,3gp,3g2,mj2 aac``."""
    reader: str
    """``libsndfile`` or ``ffmpeg``."""
    rate: int
    channels: int
    seconds: float | None
    """The declared duration; None when the header does not say."""


def dbfs(x: np.ndarray) -> float:
    """RMS level of float samples in [-1, 1], in dB relative to full scale."""
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (clipped)."""
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2")


def to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM as float32 samples in [-1, 1)."""
    return pcm.astype(np.float32) / 32768


def to_mono_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Average the channels and resample to 16 kHz, as float32."""
    if x.ndim == 2:
        x = x.mean(axis=1)
    x = np.asarray(x, dtype=np.float32)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


def audio_info(path: str | Path) -> AudioInfo:
    """The file's format, rate, channels and declared duration, from its header alone.

    Raises NotAudioError when neither reader knows the file, AudioError when it is
    missing or its header says it is truncated."""
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise AudioError(name, "file not found")
    if not p.is_file():
        raise AudioError(name, "not a regular file")
    try:
        info = sf.info(name)
    except sf.LibsndfileError as e:
        reason = str(e).replace(f"Error opening {name!r}: ", "").strip()
        if "not recognised" not in reason:
            raise AudioError(name, f"not readable as audio: {reason}") from None
        from vggvox import audio_ffmpeg  # FFmpeg's decoders cost memory: only when needed

        return audio_ffmpeg.info(name, _sniff(p))
    except (RuntimeError, ValueError) as e:
        raise AudioError(name, f"not readable as audio: {e}") from None
    truncated = _TRUNCATED.search(info.extra_info)
    if truncated:
        raise AudioError(name, f"truncated: the header declares {truncated.group(1)} data "
                               f"bytes but the file holds {truncated.group(2)}")
    seconds = info.frames / info.samplerate if 0 <= info.frames < _UNKNOWN_FRAMES else None
    return AudioInfo(name, f"{info.format} {info.subtype}".strip(), "libsndfile",
                     info.samplerate, info.channels, seconds)


def check_bounds(info: AudioInfo, max_seconds: float | None = None) -> None:
    """Refuse, from the header alone, a rate outside MIN_RATE..MAX_RATE, a channel count
    outside 1..MAX_CHANNELS or a declared duration over ``max_seconds``."""
    if not MIN_RATE <= info.rate <= MAX_RATE:
        raise AudioError(info.path, f"sample rate {info.rate} Hz is outside the "
                                    f"{MIN_RATE}..{MAX_RATE} Hz taken")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(info.path, f"{info.channels} channels, outside the "
                                    f"1..{MAX_CHANNELS} taken")
    if max_seconds is not None and info.seconds is not None and info.seconds > max_seconds:
        raise AudioError(info.path, f"{info.seconds:.1f} s of audio, more than the "
                                    f"{max_seconds:g} s taken")


def load_audio(path: str | Path, max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file (see the format rule above) as 16 kHz mono float32 in [-1, 1].

    With ``max_seconds`` a longer file is refused: by its header before decoding,
    else as soon as the decoded audio passes it. Raises AudioError naming the file
    and the reason when it is missing, not audio, truncated, out of bounds, empty
    or silent."""
    info = audio_info(path)
    check_bounds(info, max_seconds)
    if info.reader == "libsndfile":
        x = join(info, _sndfile_blocks(info), max_seconds)
    else:
        from vggvox import audio_ffmpeg

        x = join(info, audio_ffmpeg.blocks(info), max_seconds)
    if x.size == 0:
        raise AudioError(info.path, "empty: no samples")
    level = dbfs(x)
    if level < SILENCE_DBFS:
        raise AudioError(info.path,
                         f"silent: level {level:.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS")
    return x


def join(info: AudioInfo, blocks: Iterator[tuple[np.ndarray, int]],
         max_seconds: float | None) -> np.ndarray:
    """Mono blocks at ``info.rate`` (each with its rate, which must not change)
    resampled as one stream to 16 kHz; refused once past ``max_seconds``."""
    resampler = None
    if info.rate != SAMPLE_RATE:
        resampler = soxr.ResampleStream(info.rate, SAMPLE_RATE, 1, dtype="float32",
                                        quality="HQ")
    limit = None if max_seconds is None else int(max_seconds * info.rate)
    out: list[np.ndarray] = []
    seen = 0
    for block, rate in blocks:
        if rate != info.rate:
            raise AudioError(info.path, f"the sample rate changes inside the file "
                                        f"({info.rate} Hz, then {rate} Hz)")
        seen += len(block)
        if limit is not None and seen > limit:
            said = "" if info.seconds is None else f" (its header said {info.seconds:.1f} s)"
            raise AudioError(info.path, f"more than the {max_seconds:g} s of audio taken{said}")
        out.append(block if resampler is None else resampler.resample_chunk(block))
    if resampler is not None and seen:
        out.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def mono(block: np.ndarray) -> np.ndarray:
    """Frames x channels as one channel: the mean of the channels."""
    return block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)


def _sndfile_blocks(info: AudioInfo) -> Iterator[tuple[np.ndarray, int]]:
    try:
        with sf.SoundFile(info.path) as f:
            frames = max(1, BLOCK // f.channels)
            while True:
                block = f.read(frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield mono(block), info.rate
    except sf.LibsndfileError as e:
        reason = str(e).replace(f"Error opening {info.path!r}: ", "").strip()
        raise AudioError(info.path, f"truncated or corrupt {info.format} ({reason})") from None
    except (RuntimeError, ValueError) as e:
        raise AudioError(info.path, f"not readable as audio: {e}") from None


def _sniff(p: Path) -> str | None:
    """What a file that no audio reader knows is, when that is plain from its first
    bytes: for the error message only."""
    try:
        with p.open("rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a multi-byte character cut at 512 bytes is still text
        text = head[: e.start].decode("utf-8") if e.start > len(head) - 4 else ""
    return "a text file" if text and "\x00" not in text else None


# -- audio kept as chunks (a turn's, an unknown voice's) ----------------------------

def keep_latest(chunks: list[np.ndarray], samples: int) -> None:
    """Trim a list of audio chunks, in place, to its latest ``samples`` samples."""
    extra = sum(len(c) for c in chunks) - samples
    while extra > 0 and chunks:
        if len(chunks[0]) <= extra:
            extra -= len(chunks.pop(0))
        else:
            chunks[0] = chunks[0][extra:]
            extra = 0


def drop_latest(chunks: list[np.ndarray], samples: int) -> None:
    """Remove the latest ``samples`` samples from a list of audio chunks, in place."""
    while samples > 0 and chunks:
        if len(chunks[-1]) <= samples:
            samples -= len(chunks.pop())
        else:
            chunks[-1] = chunks[-1][:-samples]
            samples = 0
