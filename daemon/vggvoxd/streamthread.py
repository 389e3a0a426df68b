"""One stream: a source, its ring buffer, and its thread that segments the audio.

    source -> RingBuffer -> [stream thread: Recognizer.segment] -> WorkQueues -> executor

The stream thread owns the recognizer's segmenter (VAD and windows); the
executor thread owns its decider, which it reaches through the stream's
``StreamSink`` (executor.py), never through the stream. A live source's items go
to the live queue (oldest windows dropped when it is full); a lossless one's to
the finite queue, and the thread waits for room there, so the ring buffer fills
and the source (a replay client) is held back instead of losing audio.

Who writes what (one writer each; every other thread only reads):

- the source's thread (or PortAudio's callback): the ring buffer's samples and
  ``ring.dropped`` (under the ring's lock), the source's ``overflows``;
- this stream's thread: the segmenter, ``frames_seen``, when audio was last heard,
  and the taps it feeds;
- the thread that starts the source (the run loop, or the control thread for a
  replay): when it was started;
- the executor thread: ``windows_decided`` and ``turns_decided`` (the sink's);
- the live queue, under its lock: ``dropped_windows``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.protocol.events import Event
from vggvox.stream.recognizer import Recognizer
from vggvox.stream.ringbuffer import RingBuffer
from vggvox.stream.segmenter import Pending, Window
from vggvoxd.executor import Flush, Job, StreamSink, WorkQueues
from vggvoxd.guard import Guard
from vggvoxd.sources import AudioSource


@dataclass(frozen=True)
class StreamCounts:
    """What a stream has done and lost, since it started (read in one go)."""

    windows: int
    """Windows embedded and decided."""
    turns: int
    """Turns closed with their answer."""
    dropped_samples: int
    """Samples overwritten in its ring buffer (the stream thread fell behind its source)."""
    dropped_windows: int
    """Windows the live queue dropped (the executor fell behind)."""
    overflows: int
    """Input overflows its capture device reported."""


@dataclass
class Tap:
    """Collects the next ``samples`` samples of a source (live enrollment)."""

    samples: int
    done: Callable[[np.ndarray], None]
    abandoned: Callable[[str], None] = lambda why: None
    """Called instead of ``done`` when the source stops or is lost first."""
    blocks: list[np.ndarray] = field(default_factory=list)
    have: int = 0
    cancelled: bool = False
    """Set by a ``cancel`` (control thread): the stream thread drops the tap unfed."""

    def feed(self, x: np.ndarray) -> bool:
        take = x[: self.samples - self.have]
        self.blocks.append(take)
        self.have += len(take)
        if self.have >= self.samples:
            self.done(np.concatenate(self.blocks))
            return True
        return False


class Stream:
    def __init__(self, source: AudioSource, recognizer: Recognizer, queues: WorkQueues,
                 buffer_s: float, publish: Callable[[Event], None],
                 on_flushed: Callable[[Stream], None] = lambda stream: None,
                 on_frames: Callable[[], None] | None = None,
                 on_fatal: Callable[[str], None] = lambda why: None) -> None:
        self.source = source
        self.name = source.name
        self.recognizer = recognizer
        self.ring = RingBuffer(round(buffer_s * SAMPLE_RATE))
        self.queues = queues
        self.sink = StreamSink(self.name, recognizer.decide, publish,
                               lambda: on_flushed(self))
        """What the executor holds of this stream (its decide step, counters, events)."""
        # A source's kind never changes: which queue its items go to is chosen once.
        self._lossless = source.lossless
        self.on_frames = on_frames
        self.frames_seen = 0
        self._heard = 0.0
        self._started = 0.0
        """Monotonic times: of the last samples read (this stream's thread), and of the
        source's last (re)start (the thread that starts it)."""
        self.taps: list[Tap] = []
        self.guard = Guard(f"stream {source.name}", on_fatal)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        """Set when a finite source has been fully read and queued."""

    def start(self) -> None:
        """Start the source (again, after a failure), and the stream thread once.

        Raises SourceError if the source cannot start; call again to retry. The
        stream clock goes on where it stopped.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"stream-{self.name}",
                                            daemon=True)
            self._thread.start()
        self._started = time.monotonic()
        if self._lossless:
            self.source.start(lambda x: self.ring.write(x, wait=True, stop=self._stop))
        else:
            self.source.start(self.ring.write)

    def stop(self) -> None:
        # The flag first: it also ends a lossless source's wait for room in the ring.
        self._stop.set()
        self.source.stop()
        self.abandon_taps(f"{self.name} stopped")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def abandon_taps(self, why: str) -> None:
        """Answer every pending live recording: it will never be complete."""
        for tap in list(self.taps):
            if self._drop(tap) and not tap.cancelled:
                tap.abandoned(why)

    def _drop(self, tap: Tap) -> bool:
        """Take ``tap`` off (False if another thread already did)."""
        try:
            self.taps.remove(tap)
            return True
        except ValueError:
            return False

    @property
    def recording(self) -> bool:
        """A live enrollment records from this stream now."""
        return any(not tap.cancelled for tap in self.taps)

    @property
    def stream_s(self) -> float:
        return self.ring.end / SAMPLE_RATE

    @property
    def last_audio(self) -> float:
        """Monotonic time of the last samples read, or of the source's last (re)start
        if later: a restarted device has its full time to deliver again."""
        return max(self._heard, self._started)

    @property
    def windows_decided(self) -> int:
        return self.sink.windows_decided

    @property
    def turns_decided(self) -> int:
        return self.sink.turns_decided

    @property
    def dropped_windows(self) -> int:
        """Windows of this stream the live queue dropped."""
        return self.queues.dropped_windows(self.sink)

    def counts(self) -> StreamCounts:
        return StreamCounts(self.sink.windows_decided, self.sink.turns_decided,
                            self.ring.dropped, self.dropped_windows, self.source.overflows)

    def healthy(self) -> bool:
        """Not given up (a finite stream's thread ends when its source is all queued)."""
        return not self.guard.failed

    def _run(self) -> None:
        self.guard.run(self._step, self._stop)

    def _step(self) -> bool | None:
        """One read of the ring buffer: True when audio came, None when none did,
        False once a finite source is all queued."""
        start, x = self.ring.read(timeout=0.1)
        if len(x):
            self.frames_seen += len(x)
            self._heard = time.monotonic()
            if self.on_frames is not None:
                self.on_frames()
            for tap in list(self.taps):
                if tap.cancelled or tap.feed(x):
                    self._drop(tap)
            self._submit(self.recognizer.segment(x, start))
        elif self.source.finished and self.ring.unread == 0:
            self.abandon_taps(f"{self.name} ended")
            self._submit([*self.recognizer.segment_end(), Flush()])
            self.done.set()
            return False
        else:
            return None
        return True

    def _submit(self, items: Sequence[Pending | Flush]) -> None:
        for item in items:
            captured = self.ring.arrival(item.end - 1) if isinstance(item, Window) else 0.0
            job = Job(self.sink, item, captured)
            if not self._lossless:
                self.queues.put_live(job)
                continue
            while not self.queues.put_finite(job):
                if self._stop.is_set():
                    return
