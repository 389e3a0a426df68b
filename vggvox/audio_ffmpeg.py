"""The second reader of the format rule (``vggvox.audio``): FFmpeg's audio containers,
through PyAV, for what libsndfile cannot read (M4A/AAC, WebM, MP4's audio, ...).

Imported only when libsndfile does not know a file: PyAV and FFmpeg's libraries
cost memory that most runs never need. The file is handed to FFmpeg as an open
Python file, not a name, so FFmpeg never reads a name as a protocol
(``http:``, ``concat:``), and only the audio demuxers of ``FFMPEG_CONTAINERS``
may probe it, so no playlist makes it open other files.

**FFmpeg's own memory.** A demuxer builds its tables when the file is opened,
before any header check of ours can run: an MP4's sample index (24 bytes a
sample, from 4 bytes of the file's ``stsz``), a Matroska file's cues. A 28 MB
M4A that declares 3 s but 7 million one-byte samples took 105 MB this way. So
on import every single allocation of FFmpeg's in this process is capped at
``MAX_ALLOC`` (``av_max_alloc``): a table past it fails the open with ENOMEM,
refused in one line. What stays: tables each under the cap (an M4A of just
under 2 million samples, an 8 MB file, still costs about 22 MB while open).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from vggvox.audio import FFMPEG_CONTAINERS, AudioInfo, NotAudioError
from vggvox.errors import AudioError

log = logging.getLogger(__name__)

_OPTIONS = {"format_whitelist": FFMPEG_CONTAINERS}
MAX_ALLOC = 8 << 20
"""The largest single allocation FFmpeg may make: an hour of 48 kHz AAC indexes in
about 2 MB, a decoded audio frame is far smaller, and an M4A's cover picture (read
whole) is rarely over 1 MB."""


def _cap_allocations() -> bool:
    """Cap FFmpeg's single allocations at MAX_ALLOC, through the libavutil that PyAV
    loaded (found in this process's maps: a wheel bundles its own copy). False
    where it cannot be found (not Linux): then only the file's size bounds them."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    paths = {line.split(None, 5)[5] for line in maps.splitlines()
             if line.count(" ") >= 5 and "/libavutil" in line}
    for path in paths:
        try:
            lib = ctypes.CDLL(path.strip())
            lib.av_max_alloc.argtypes = [ctypes.c_size_t]
            lib.av_max_alloc.restype = None
            lib.av_max_alloc(MAX_ALLOC)
        except (OSError, AttributeError):
            continue
        return True
    log.debug("libavutil not found in /proc/self/maps: FFmpeg's allocations are not capped")
    return False


CAPPED = _cap_allocations()


def _open(name: str, what: str | None) -> tuple[Any, Any]:
    """(open file, container); NotAudioError when no audio container knows the file."""
    fh = open(name, "rb")  # the callers close it, with the container
    try:
        return fh, av.open(fh, options=_OPTIONS)
    except MemoryError:  # av.error.MemoryError: a table over MAX_ALLOC (ENOMEM)
        fh.close()
        raise AudioError(name, f"refused: its tables would need more than "
                               f"{MAX_ALLOC >> 20} MB in one piece (a damaged or "
                               "crafted file)") from None
    except (av.FFmpegError, ValueError, OSError):
        fh.close()
        why = (f"it is {what}, which neither libsndfile nor FFmpeg reads as audio" if what
               else "neither libsndfile nor FFmpeg knows its format")
        raise NotAudioError(name, f"not readable as audio: {why}") from None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _audio_stream(name: str, container: Any) -> Any:
    streams = container.streams.audio
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no"
        raise NotAudioError(name, f"not readable as audio: a {container.format.long_name} "
                                  f"file with {kinds} streams and no audio stream")
    stream = streams[0]
    if stream.codec_context is None:  # FFmpeg knows no decoder for what the file names
        raise AudioError(name, f"no decoder for its audio stream (a "
                               f"{container.format.long_name} file): damaged, or a codec "
                               "this FFmpeg does not have")
    return stream


def info(name: str, what: str | None = None) -> AudioInfo:
    """The header's facts, as ``vggvox.audio.audio_info`` gives them; ``what`` is what
    the file looks like when it is plainly something else (for the message)."""
    fh, container = _open(name, what)
    try:
        stream = _audio_stream(name, container)
        if stream.duration is not None and stream.time_base is not None:
            seconds: float | None = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = None
        codec = stream.codec_context.name
        return AudioInfo(name, f"{container.format.name} {codec}", "ffmpeg",
                         int(stream.sample_rate or 0), int(stream.channels or 0), seconds)
    finally:
        container.close()
        fh.close()


def blocks(audio: AudioInfo) -> Iterator[tuple[np.ndarray, int]]:
    """The decoded audio, one frame at a time: (mono float32 samples, their rate)."""
    fh, container = _open(audio.path, None)
    try:
        stream = _audio_stream(audio.path, container)
        # Planar float whatever the codec gives; layout and rate are left as they are.
        planar = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            for out in planar.resample(frame):
                x = out.to_ndarray()
                yield (x[0] if x.shape[0] == 1 else x.mean(axis=0)), out.sample_rate
    except (av.FFmpegError, ValueError) as e:
        raise AudioError(audio.path, f"truncated or corrupt {audio.format} "
                                     f"({_reason(e)})") from None
    finally:
        container.close()
        fh.close()
