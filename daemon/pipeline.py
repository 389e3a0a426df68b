"""Stages 2-4 for one source: ring buffer -> VAD gate -> sliding windows.

One pipeline thread per source reads new audio from the ring buffer, runs the
VAD frame by frame, publishes speech start and end, and hands due windows to
the embedding queue. Live sources lose the oldest work when the queue is
full; finite ones (file, replay) wait instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvoxd.config import Settings
from vggvoxd.events import Event, SpeechEndEvent, SpeechStartEvent
from vggvoxd.ringbuffer import RingBuffer
from vggvoxd.sources import AudioSource
from vggvoxd.vad import SpeechEnd, SpeechStart, VadGate
from vggvoxd.windows import WindowSpec, due_windows
from vggvoxd.worker import Flush, WindowJob, WindowQueue


def make_gate(settings: Settings) -> VadGate:
    v = settings.vad
    return VadGate(v.aggressiveness, v.frame_ms, v.onset_ms, v.hangover_ms, SAMPLE_RATE)


def window_spec(settings: Settings) -> WindowSpec:
    w = settings.window
    return WindowSpec(round(w.length_s * SAMPLE_RATE), round(w.hop_s * SAMPLE_RATE),
                      round(w.min_speech_s * SAMPLE_RATE))


@dataclass
class Tap:
    """Collects the next ``samples`` samples of a source (live enrollment)."""

    samples: int
    done: Callable[[np.ndarray], None]
    blocks: list[np.ndarray] = field(default_factory=list)
    have: int = 0

    def feed(self, x: np.ndarray) -> bool:
        take = x[: self.samples - self.have]
        self.blocks.append(take)
        self.have += len(take)
        if self.have >= self.samples:
            self.done(np.concatenate(self.blocks))
            return True
        return False


class Pipeline:
    def __init__(self, source: AudioSource, settings: Settings, queue: WindowQueue,
                 publish: Callable[[Event], None],
                 on_frames: Callable[[], None] | None = None) -> None:
        self.source = source
        self.ring = RingBuffer(round(settings.audio.buffer_s * SAMPLE_RATE))
        self.gate = make_gate(settings)
        self.spec = window_spec(settings)
        self.queue = queue
        self.publish = publish
        self.on_frames = on_frames
        self.frames_seen = 0
        self.dropped_windows = 0
        self.last_audio = 0.0  # monotonic time of the last samples read
        self.taps: list[Tap] = []
        self._seg_start: int | None = None
        self._last_end: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        """Set when a finite source has been fully processed."""

    def start(self) -> None:
        """Start the source (again, after a failure), and the pipeline thread once.

        Raises SourceError if the source cannot start; call again to retry. The
        stream clock goes on where it stopped.
        """
        if self._thread is None:
            self._thread = threading.Thread(target=self._run,
                                            name=f"pipeline-{self.source.name}", daemon=True)
            self._thread.start()
        self.last_audio = time.monotonic()
        self.source.start(self.ring.write)

    def stop(self) -> None:
        self.source.stop()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    @property
    def stream_s(self) -> float:
        return self.ring.end / SAMPLE_RATE

    def _run(self) -> None:
        frame = self.gate.frame
        while not self._stop.is_set():
            start, x = self.ring.read(timeout=0.1)
            if len(x):
                self.frames_seen += len(x)
                self.last_audio = time.monotonic()
                if self.on_frames is not None:
                    self.on_frames()
                for tap in list(self.taps):
                    if tap.feed(x):
                        self.taps.remove(tap)
                for i in range(0, len(x), frame):
                    chunk = x[i : i + frame]
                    for ev in self.gate.process(start + i, chunk):
                        self._handle(ev)
                    if self._seg_start is not None:
                        # Within an open segment a window is due as soon as its last
                        # sample is here: waiting for the next speech frame would hold
                        # windows that end in a short pause for up to the hangover.
                        self._submit(due_windows(self.spec, self._seg_start,
                                                 start + i + len(chunk), self._last_end))
            elif self.source.finished and self.ring.unread == 0:
                for ev in self.gate.flush():
                    self._handle(ev)
                self.queue.put(Flush(self.source.name), lossless=True)
                self.done.set()
                return

    def _handle(self, ev: SpeechStart | SpeechEnd) -> None:
        name = self.source.name
        if isinstance(ev, SpeechStart):
            self._seg_start, self._last_end = ev.sample, None
            t = ev.sample / SAMPLE_RATE
            self.publish(SpeechStartEvent(source=name, t_start=t, t_end=t))
        elif self._seg_start is not None:
            self._submit(due_windows(self.spec, self._seg_start, ev.sample, self._last_end,
                                     final=True))
            self.publish(SpeechEndEvent(source=name, t_start=self._seg_start / SAMPLE_RATE,
                                        t_end=ev.sample / SAMPLE_RATE))
            self._seg_start = None

    def _submit(self, windows: list[tuple[int, int]]) -> None:
        for start, end in windows:
            self._last_end = end
            samples = self.ring.get(start, end)
            if samples is None:  # already overwritten: the pipeline fell far behind
                self.dropped_windows += 1
                continue
            job = WindowJob(self.source.name, start, end, samples, self.ring.arrival(end - 1))
            if not self.queue.put(job, lossless=self.source.lossless):
                self.dropped_windows += 1
