"""What keeps a satellite's capture running: a device (``vggvox.capture``), or a file
that stands in for one, opened again with back-off when it fails or falls silent.

    capture (PortAudio's callback, or FileInput's thread) -> RingBuffer.write (a copy)

``Capturer.turn`` runs in the satellite's main thread, between turns of its link.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16
from vggvox.capture import CaptureError, DeviceInput, Sink
from vggvox.stream.ringbuffer import RingBuffer

log = logging.getLogger(__name__)

CAPTURE_RETRY_S = (1.0, 10.0)
"""A capture device that fails is opened again after 1 s, doubling to 10 s."""
STALL_S = 3.0
"""A capture that delivers nothing this long is opened again."""


class FileInput:
    """A file delivered at real-time pace, as a device would deliver it, in blocks, from
    a thread of its own (tests, demos, benchmarks); ``loop``: again from its start when it
    ends (else it stops, ``alive`` False)."""

    def __init__(self, path: Path, block_ms: int = 20, loop: bool = False) -> None:
        self.path = Path(path)
        self.block = SAMPLE_RATE * block_ms // 1000
        self.loop = loop
        self.overflows = 0
        try:
            self._samples = to_int16(load_audio(self.path))
        except Exception as e:  # any reason it cannot be audio: one line
            raise CaptureError(f"{self.path}: cannot read it as audio: {e}") from None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), daemon=True,
                                        name=f"file:{self.path.name}")
        self._thread.start()

    def _run(self, sink: Sink) -> None:
        t0, pos, total = time.monotonic(), 0, len(self._samples)
        while not self._stop.is_set() and (pos < total or self.loop):
            self._stop.wait(max(0.0, t0 + pos / SAMPLE_RATE - time.monotonic()))
            at = pos % total if self.loop else pos
            sink(self._samples[at:at + self.block])
            pos += min(self.block, total - at)

    def describe(self) -> str:
        return f"{self.path}{' (looped)' if self.loop else ''} at real-time pace"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def capture_of(device: str | None) -> DeviceInput | FileInput:
    """``--device``: a PortAudio input (index, or name or part of one), or ``file:PATH``
    (played at real-time pace, for tests and demos), ``file-loop:PATH`` (again and again)."""
    if device and device.startswith(("file:", "file-loop:")):
        kind, _, path = device.partition(":")
        return FileInput(Path(path), loop=kind == "file-loop")
    return DeviceInput(device)


class Capturer:
    """Keeps the capture running (in the main thread): opens it, and opens it again with
    back-off when it fails, stops, or delivers nothing for ``STALL_S`` (a device gone
    without an error). A file that has ended stays ended."""

    def __init__(self, capture: DeviceInput | FileInput, ring: RingBuffer) -> None:
        self.capture, self.ring = capture, ring
        self.started = False
        self._retry_at, self._backoff = 0.0, CAPTURE_RETRY_S[0]
        self._end, self._moved = 0, 0.0

    def turn(self, now: float) -> None:
        capture = self.capture
        if self.ring.end != self._end:
            self._end, self._moved = self.ring.end, now
        elif capture.alive() and self.started and now - self._moved > STALL_S:
            log.warning("no audio from %s for %.0f s; opening it again", capture.describe(),
                        now - self._moved)
            capture.stop()
        if capture.alive() or now < self._retry_at:
            return
        if isinstance(capture, FileInput) and self.started:
            return
        try:
            capture.start(self.ring.write)
            self.started, self._backoff, self._moved = True, CAPTURE_RETRY_S[0], now
            log.info("capturing from %s", capture.describe())
        except CaptureError as e:
            log.warning("%s; next try in %.0f s", e, self._backoff)
            self._retry_at = now + self._backoff
            self._backoff = min(2 * self._backoff, CAPTURE_RETRY_S[1])
