"""Stage 1: audio sources. Each delivers 16 kHz mono int16 blocks to a sink. Which
one a ``--source`` or a ``sources:`` entry opens is its scheme's (``source_schemes``).

- ``MicSource``: PyAudio capture; the callback only hands the block to the sink
  (the ring buffer's write) and counts PortAudio's input-overflow flag.
- ``FileSource``: a file, at real-time pace, live: it stands in for a microphone
  (benchmarks and tests play files as the microphones of rooms), so it drops, and
  logs, what the pipeline cannot keep up with (for every window: ``replay``, or
  ``stdin``).
- ``StdinSource``: raw 16-bit little-endian PCM from standard input; lossless
  (``stdin``: the pipe holds its writer back) or live (``stdin:live``: the
  oldest audio and windows are dropped, and logged, when the pipeline is behind).
- ``PushSource``: blocks pushed by the control socket (``replay``).

A lossless source's stream waits for the pipeline (the ring buffer's writer
waits, windows go to the finite queue) and never loses a window; a live one's
never waits. A finite source (file, stdin, replay) ends, and says so with
``finished``; only a device may fall silent because it is gone (``is_device``).
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16
from vggvox.capture import CaptureError, DeviceInput, NoInputDevice, quiet_stderr

log = logging.getLogger(__name__)

Sink = Callable[[np.ndarray], None]


class SourceError(Exception):
    """The source cannot deliver audio (no device, device gone, unreadable file)."""


class AudioSource(ABC):
    """A stream of 16 kHz mono int16 audio."""

    rate = SAMPLE_RATE
    is_device = False
    """A capture device: it delivers continuously, so a silence means it is gone
    (``livesources`` restarts it). A pipe or a file may pause, or be held back."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.overflows = 0
        self.finished = False
        """True once a finite source (file, stdin, replay) has delivered everything."""

    @abstractmethod
    def start(self, sink: Sink) -> None:
        """Begin delivering blocks to ``sink``; raises SourceError if it cannot."""

    @abstractmethod
    def stop(self) -> None:
        """Stop delivering and release the device or file."""

    @abstractmethod
    def alive(self) -> bool:
        """Still able to deliver (False once the device is gone or the input ended)."""

    @property
    def lossless(self) -> bool:
        """Finite sources wait for the pipeline instead of losing audio."""
        return False

    @property
    def link(self) -> str | None:
        """A source that reconnects by itself (``vggvoxd.netsource``): its link's state
        (``waiting``, ``running``, ``lost``) while it runs, which its LiveSource shows;
        None: the LiveSource starts it again when it is lost."""
        return None


def input_devices() -> list[dict[str, Any]]:
    """PortAudio's input devices: index, name, maxInputChannels, defaultSampleRate."""
    import pyaudio

    with quiet_stderr():
        pa = pyaudio.PyAudio()
    try:
        found = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    finally:
        pa.terminate()
    return [d for d in found if d.get("maxInputChannels", 0) > 0]


class MicSource(AudioSource):
    """A capture device, through the library's ``capture.DeviceInput`` (PyAudio: a fresh
    PortAudio on each start, overflows counted in its callback); what restarts it when
    the device is gone, with a back-off, is ``livesources``'."""

    is_device = True

    def __init__(self, device: str | int | None = None, block_ms: int = 20,
                 name: str = "mic") -> None:
        self._input = DeviceInput(device, block_ms)
        super().__init__(name)
        self.device = device
        self.frames_per_block = self._input.frames_per_block

    @property
    def overflows(self) -> int:
        """PortAudio's input overflows, counted by the device's callback."""
        return self._input.overflows

    @overflows.setter
    def overflows(self, n: int) -> None:
        self._input.overflows = n

    def start(self, sink: Sink) -> None:
        try:
            self._input.start(sink)
        except NoInputDevice as e:
            raise SourceError(f"{e} (try: make demo, or vggvoxd --source file:PATH or "
                              "--source stdin; vggvoxd --list-devices shows what PortAudio "
                              "sees)") from None
        except CaptureError as e:
            raise SourceError(str(e)) from e
        index = self._input.index
        log.info("%s: capturing from %s", self.name,
                 "default device" if index is None else f"device {index}")

    def alive(self) -> bool:
        return self._input.alive()

    def stop(self) -> None:
        self._input.stop()


class ThreadSource(AudioSource):
    """A source that feeds the sink from a thread of its own."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), name=self.name,
                                        daemon=True)
        self._thread.start()

    @abstractmethod
    def _run(self, sink: Sink) -> None: ...

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


class FileSource(ThreadSource):
    """A file played at real-time pace, as a microphone would deliver it."""

    def __init__(self, path: Path, block_ms: int = 20, name: str | None = None) -> None:
        super().__init__(name or f"file:{path}")
        self.path = Path(path)
        self.block = SAMPLE_RATE * block_ms // 1000
        self._samples = to_int16(load_audio(self.path))

    def _run(self, sink: Sink) -> None:
        t0 = time.monotonic()
        pos = 0
        while pos < len(self._samples) and not self._stop.is_set():
            self._stop.wait(max(0.0, t0 + pos / SAMPLE_RATE - time.monotonic()))
            sink(self._samples[pos : pos + self.block])
            pos += self.block
        self.finished = pos >= len(self._samples)


class StdinSource(ThreadSource):
    """Raw PCM from standard input, read until EOF, however long the writer pauses.

    Lossless by default: a pipe is a finite recording (``ffmpeg ... | vggvoxd``),
    and reading no faster than the pipeline holds the writer back, so that fed fast
    it gives the events it gives at real-time pace. ``live``: read as it comes, and
    drop the oldest audio and windows when behind (a capture that must not lag)."""

    def __init__(self, stream: BinaryIO | None = None, block_ms: int = 20,
                 name: str = "stdin", live: bool = False) -> None:
        super().__init__(name)
        self.fd = (stream if stream is not None else sys.stdin.buffer).fileno()
        self.block_bytes = 2 * SAMPLE_RATE * block_ms // 1000
        self.live = live

    @property
    def lossless(self) -> bool:
        return not self.live

    def _run(self, sink: Sink) -> None:
        carry = b""
        while not self._stop.is_set():
            # Raw reads after select: a blocked buffered read could not see the stop flag.
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(self.fd, self.block_bytes)
            if not data:  # EOF: the input has ended (a stop is not an end: no flag)
                self.finished = True
                return
            data = carry + data
            usable = len(data) - len(data) % 2
            carry = data[usable:]
            sink(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16))


class PushSource(AudioSource):
    """Audio pushed in by someone else (the control socket's replay requests)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._sink: Sink | None = None

    @property
    def lossless(self) -> bool:
        return True

    def start(self, sink: Sink) -> None:
        self._sink = sink

    def push(self, samples: np.ndarray) -> None:
        if self._sink is None:
            raise SourceError(f"{self.name} is not started")
        self._sink(samples)

    def finish(self) -> None:
        self.finished = True

    def alive(self) -> bool:
        return self._sink is not None and not self.finished

    def stop(self) -> None:
        self._sink = None
