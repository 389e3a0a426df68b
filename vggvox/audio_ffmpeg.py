"""The second reader of the format rule (``vggvox.audio``): FFmpeg's audio containers,
through PyAV, for what libsndfile cannot read (M4A/AAC, WebM, MP4's audio, ...).

Imported only when libsndfile does not know a file: PyAV and FFmpeg's libraries
cost memory that most runs never need. The file is handed to FFmpeg as an open
Python file, not a name, so FFmpeg never reads a name as a protocol
(``http:``, ``concat:``), and only the audio demuxers of ``FFMPEG_CONTAINERS``
may probe it, so no playlist makes it open other files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import av
import numpy as np

from vggvox.audio import FFMPEG_CONTAINERS, AudioInfo, NotAudioError
from vggvox.errors import AudioError

_OPTIONS = {"format_whitelist": FFMPEG_CONTAINERS}


def _open(name: str, what: str | None) -> tuple[Any, Any]:
    """(open file, container); NotAudioError when no audio container knows the file."""
    fh = open(name, "rb")  # the callers close it, with the container
    try:
        return fh, av.open(fh, options=_OPTIONS)
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
    return streams[0]


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
