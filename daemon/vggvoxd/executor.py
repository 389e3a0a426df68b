"""The embed executor: one thread owns the ONNX session and embeds for every stream.

Streams hand it their segmenter's items (speech starts, windows, speech ends)
in stream order, through two bounded queues:

- **live** (a microphone, a file, stdin:live): when full, the oldest live *window* is dropped and
  counted against its stream. Dropping a speech start or end would corrupt a
  turn, and they are tiny, so they are never dropped.
- **finite** (the lossless sources: stdin, replays): when full, the producer
  waits. Such a stream slows down; it never loses a window.

Each batch takes live work first, then fills up with finite work, so a fast
replay can never starve live identification. After the batched embedding call
the executor runs each item's decide step in order (the deciders belong to
this thread) and publishes the results through the event mapping. It never
touches the voiceprint store: it decides from the ``VoiceprintSet`` in memory,
which the store follower (``storefollow.py``) reloads when the store changes, so
a slow or unreachable store never holds up a decision.

A job carries a ``StreamSink``, not its stream: the stream's name, its decide
step, where its events go and what to call when it is all decided. The executor
never reaches into a stream; the queues write one field of a sink, its dropped
windows, under their lock.

Who owns which counter (each has one writer):

- the executor thread: each sink's ``windows_decided`` and ``turns_decided``,
  and its own ``windows_done``, ``compute_s``, ``errors``, ``lost_jobs``,
  ``last_heard`` (others read them: an int or a float is read in one step;
  ``last_heard`` is read as a copy);
- the queues, under their lock (any stream thread puts, the executor takes):
  ``dropped`` and each sink's ``dropped_windows`` (read through
  ``dropped_windows(sink)``, which takes the lock).

The loop is guarded (``guard.py``): an unexpected exception is logged and
counted, the batch it was in is lost (counted too), and the loop goes on; after
5 in a row the daemon exits non-zero for its supervisor to restart it.
``health()`` says how the stage is doing, for ``status`` and the watchdog.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.protocol.events import Event, to_events
from vggvox.stream.recognizer import embed_windows
from vggvox.stream.results import Result, TurnUpdate
from vggvox.stream.segmenter import Pending, Window
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.guard import Guard

log = logging.getLogger(__name__)

STALL_S = 10.0
"""Work waiting this long with no batch done: the stage is not making progress."""


@dataclass(frozen=True)
class Flush:
    """Marker: every item of a finite stream before it has been queued."""


@dataclass(eq=False)
class StreamSink:
    """What the executor holds of a stream: where its items' results go, and what it
    counts of them. Its counters are the executor thread's (the only writer)."""

    name: str
    decide: Callable[[Pending, np.ndarray | None], list[Result]]
    """The stream's recognizer's decide step (its decider belongs to the executor thread)."""
    publish: Callable[[Event], None]
    flushed: Callable[[], None] = lambda: None
    """Called in the executor thread once every item queued before a ``Flush`` is decided."""
    windows_decided: int = 0
    """Windows embedded and decided."""
    turns_decided: int = 0
    """Turns closed with their answer."""
    dropped_windows: int = 0
    """Windows of this stream the live queue dropped: the work queues' to write, under
    their lock (whichever stream thread puts), not the executor's."""


@dataclass(frozen=True)
class Job:
    sink: StreamSink
    item: Pending | Flush
    captured: float = 0.0
    """Wall time when a window's last sample entered the ring buffer."""


class WorkQueues:
    """The live and finite queues, under one condition so one wait serves both."""

    def __init__(self, live_size: int, finite_size: int) -> None:
        self.live: deque[Job] = deque()
        self.finite: deque[Job] = deque()
        self.live_size, self.finite_size = live_size, finite_size
        self._cond = threading.Condition()
        self.dropped = 0
        """Live windows dropped, of every stream (under the lock)."""
        self.closed = False

    def __len__(self) -> int:
        return len(self.live) + len(self.finite)

    def dropped_windows(self, sink: StreamSink) -> int:
        """The windows of ``sink``'s stream this queue dropped."""
        with self._cond:
            return sink.dropped_windows

    def put_live(self, job: Job) -> None:
        with self._cond:
            windows = sum(1 for j in self.live if isinstance(j.item, Window))
            if isinstance(job.item, Window) and windows >= self.live_size:
                victim = next(j for j in self.live if isinstance(j.item, Window))
                self.live.remove(victim)
                victim.sink.dropped_windows += 1
                self.dropped += 1
            self.live.append(job)
            self._cond.notify_all()

    def put_finite(self, job: Job, timeout: float = 0.2) -> bool:
        """Queue, or wait up to ``timeout`` for room: False if there was none (call again)."""
        with self._cond:
            if len(self.finite) >= self.finite_size and not self.closed:
                self._cond.wait(timeout)
            if self.closed or len(self.finite) >= self.finite_size:
                return False
            self.finite.append(job)
            self._cond.notify_all()
            return True

    def take(self, most: int, timeout: float) -> list[Job]:
        with self._cond:
            if not self.live and not self.finite:
                self._cond.wait(timeout)
            out: list[Job] = []
            for q in (self.live, self.finite):
                while q and len(out) < most:
                    out.append(q.popleft())
            self._cond.notify_all()
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EmbedExecutor:
    def __init__(self, embedder: Embedder, voiceprints: VoiceprintSet, queues: WorkQueues,
                 max_batch: int, on_fatal: Callable[[str], None] = lambda why: None,
                 on_decision: Callable[[float], None] | None = None) -> None:
        self.embedder = embedder
        self.voiceprints = voiceprints
        """Read on each decision; loaded and reloaded by the store follower
        (``storefollow.py``): this thread never touches the store."""
        self.queues = queues
        self.max_batch = max_batch
        self.on_decision = on_decision
        """Called with each window's decision latency (s), once its events are out (the
        metrics' histogram; None without metrics: no call per window)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedder", daemon=True)
        self.windows_done = 0
        self.compute_s = 0.0
        self.errors = 0
        """Embedding calls that failed (the model refused the input)."""
        self.guard = Guard("embedder", on_fatal)
        self._lost = 0
        """Jobs in batches lost to an unexpected exception, since start."""
        self.last_heard: dict[str, float] = {}
        """Enrolled speaker -> wall time a turn last named them, since start. Written by
        this thread only; others read a copy (``dict(...)``, one step under the GIL)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queues.close()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        self.guard.run(self._step, self._stop)

    def _step(self) -> bool | None:
        """One batch: True when it was embedded and decided, None when none came."""
        jobs = self.queues.take(self.max_batch, timeout=0.2)
        if not jobs:
            return None  # idle turns do not end a run of failures (guard.py)
        try:
            self._process(jobs)
        except Exception:
            self._lost += len(jobs)  # the guard logs and counts the failure itself
            raise
        return True

    @property
    def lost_jobs(self) -> int:
        return self._lost

    def health(self) -> dict[str, object]:
        """The stage's state for ``status``: ok, retrying or failed, and its counters."""
        return {**self.guard.health(), "lost_jobs": self._lost}

    def healthy(self) -> bool:
        """Alive, and either idle by design (nothing waiting) or making progress."""
        if self.guard.failed or not self._thread.is_alive():
            return False
        return not len(self.queues) or time.monotonic() - self.guard.progress < STALL_S

    def _process(self, jobs: list[Job]) -> None:
        windows = [(j, j.item) for j in jobs if isinstance(j.item, Window)]
        embeddings: dict[int, np.ndarray] = {}
        if windows:
            t0 = time.perf_counter()
            try:
                embs = embed_windows(self.embedder, [w for _, w in windows])
                embeddings = {id(j): e for (j, _), e in zip(windows, embs, strict=True)}
            except VggvoxError as e:
                self.errors += 1
                log.warning("embedding %d windows failed: %s", len(windows), e)
            self.compute_s += time.perf_counter() - t0
        for job in jobs:
            sink, item = job.sink, job.item
            if isinstance(item, Flush):
                sink.flushed()
                continue
            if isinstance(item, Window):
                if id(job) not in embeddings:
                    continue
                self.windows_done += 1
                sink.windows_decided += 1
            for result in sink.decide(item, embeddings.get(id(job))):
                if isinstance(result, TurnUpdate):
                    if result.speaker is not None:
                        self.last_heard[result.speaker] = time.time()
                    if result.final:
                        sink.turns_decided += 1
                for ev in to_events(sink.name, result, self.embedder.tag, job.captured):
                    sink.publish(ev)
            if isinstance(item, Window) and job.captured and self.on_decision is not None:
                self.on_decision(time.time() - job.captured)
