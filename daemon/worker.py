"""Stages 5-6: the embedding worker. One thread owns the embedder and the
voiceprints; it embeds due windows in batches, scores each against every
enrolled speaker and publishes a ``speaker`` event per window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vggvox.audio import SAMPLE_RATE, to_float
from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.scoring import Scorer
from vggvox.store import VoiceprintStore
from vggvoxd.events import Event, SpeakerEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowJob:
    source: str
    start: int
    end: int
    samples: np.ndarray
    """int16, 16 kHz."""
    captured: float


@dataclass(frozen=True)
class Flush:
    """Marker: every window of ``source`` before it has been queued."""

    source: str


Item = WindowJob | Flush


class WindowQueue:
    """Bounded FIFO. A full queue drops its oldest live window for a new live one;
    lossless puts (finite sources) wait for room instead.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: deque[tuple[Item, bool]] = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item, lossless: bool = False, timeout: float = 0.2) -> bool:
        with self._cond:
            while len(self._items) >= self.size and not self.closed:
                if not lossless:
                    victim = next((i for i, (_, keep) in enumerate(self._items) if not keep),
                                  None)
                    if victim is None:
                        self.dropped += 1
                        return False
                    del self._items[victim]
                    self.dropped += 1
                    break
                self._cond.wait(timeout)
            if self.closed:
                return False
            self._items.append((item, lossless))
            self._cond.notify_all()
            return True

    def get_batch(self, most: int, timeout: float) -> list[Item]:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            out = [self._items.popleft()[0] for _ in range(min(most, len(self._items)))]
            self._cond.notify_all()
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EmbedWorker:
    def __init__(self, embedder: Embedder, scorer: Scorer, store: VoiceprintStore,
                 threshold: float, top_k: int, queue: WindowQueue, max_batch: int,
                 publish: Callable[[Event], None], on_flush: Callable[[str], None]) -> None:
        self.embedder = embedder
        self.scorer = scorer
        self.store = store
        self.threshold = threshold
        self.top_k = top_k
        self.queue = queue
        self.max_batch = max_batch
        self.publish = publish
        self.on_flush = on_flush
        # Names and their voiceprint matrix, replaced together in one assignment:
        # refresh() also runs in other threads (SIGHUP, the reload request), and a
        # batch must never pair new names with an old matrix.
        self.voiceprints: tuple[list[str], np.ndarray] = (
            [], np.zeros((0, embedder.card.embedding_size), dtype=np.float32))
        self._generation = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedder", daemon=True)
        self.windows_done = 0
        self.compute_s = 0.0
        self.errors = 0

    def start(self) -> None:
        self.refresh(force=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        self._thread.join(timeout=2.0)

    @property
    def names(self) -> list[str]:
        return self.voiceprints[0]

    def refresh(self, force: bool = False) -> None:
        """Reload voiceprints if the store changed since the last look."""
        try:
            generation = self.store.generation()
            if force or generation != self._generation:
                names, prints = self.store.voiceprints(self.embedder.tag)
                if not names:
                    prints = np.zeros((0, self.embedder.card.embedding_size), np.float32)
                self.voiceprints = (names, prints)
                self._generation = generation
                log.info("voiceprints: %d speakers", len(names))
        except VggvoxError as e:
            log.error("cannot load voiceprints: %s", e)

    def _run(self) -> None:
        while not self._stop.is_set():
            items = self.queue.get_batch(self.max_batch, timeout=0.2)
            if not items:
                continue
            self.refresh()
            jobs: list[WindowJob] = []
            for item in items:
                if isinstance(item, Flush):
                    self._process(jobs)
                    jobs = []
                    self.on_flush(item.source)
                else:
                    jobs.append(item)
            self._process(jobs)

    def _process(self, jobs: list[WindowJob]) -> None:
        if not jobs:
            return
        t0 = time.perf_counter()
        try:
            embs = self.embedder.embed_batch([to_float(j.samples) for j in jobs])
        except VggvoxError as e:
            self.errors += 1
            log.warning("embedding %d windows failed: %s", len(jobs), e)
            return
        names, prints = self.voiceprints
        scores = self.scorer.scores(embs, prints)
        self.compute_s += time.perf_counter() - t0
        for job, row in zip(jobs, scores, strict=True):
            top = self.scorer.top_k(row, names, self.top_k)
            best = top[0] if top else None
            self.publish(SpeakerEvent(
                source=job.source, t_start=job.start / SAMPLE_RATE, t_end=job.end / SAMPLE_RATE,
                speaker=best.name if best and best.score >= self.threshold else None,
                score=round(best.score, 4) if best else 0.0,
                top=[[m.name, round(m.score, 4)] for m in top],
                model=self.embedder.tag, captured=job.captured,
            ))
            self.windows_done += 1
