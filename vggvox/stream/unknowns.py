"""Unknown voices, clustered online within one stream: ``unknown-1``, ``unknown-2``, ...

A turn that names no enrolled speaker asks ``assign`` for a label. Its
evidence is compared with each cluster's centroid (the normalised sum of the
turns it holds); the best cluster is taken if its score reaches the merge
rule's cutoff (calibrated, like enrolled speakers, so that a new voice joins an
existing cluster with probability ``false_merge``). Otherwise the turn gets a
new cluster of its own, provisional until the turn closes.

When a turn closes, ``commit`` adds its evidence and speech to the cluster of
its final label, and drops its provisional cluster if it ended up elsewhere
(until then the provisional one stays, since hysteresis may still show it). So
a cluster only learns from whole turns, and one noisy early decision of a turn
cannot move a centroid. Labels are never reused: a number is skipped when a
turn that first sounded new ends as someone known.

Bounded: at most ``max_clusters`` that hold turns (when a new one gets its
first turn, the one heard longest ago is forgotten), each forgotten after
``max_age_s`` unheard, each keeping its latest ``keep_speech_s`` of speech and
``MAX_TURNS`` turn ids. Memory only: nothing reaches a store unless a person
names a cluster (``take``); a named label then reports its name (``named``).

Threads: the decider's owner calls ``assign``/``commit``/``expire``; anyone
may call ``labels``/``speech``/``take`` (a control request), so all of them
hold one lock, for microseconds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from vggvox.audio import SAMPLE_RATE, keep_latest
from vggvox.calibration import AcceptRule
from vggvox.scoring import l2_normalize

PREFIX = "unknown-"
MAX_TURNS = 1000
"""Turn ids remembered per cluster (for the ``named`` event), the latest kept."""


@dataclass(frozen=True)
class UnknownConfig:
    enabled: bool = True
    """Cluster voices that match no enrolled speaker (off: they are just unknown)."""
    max_clusters: int = 8
    """Unknown voices remembered per stream; the one heard longest ago goes first."""
    max_age_s: float = 1800.0
    """A cluster not heard for this long (stream time) is forgotten."""
    keep_speech_s: float = 30.0
    """Latest speech kept per cluster, to enroll it when a person names it."""
    false_merge: float = 0.001
    """Calibrated probability that a new voice is put in an existing cluster. Stricter
    than the false-accept rate: voices in one room share a channel, which brings
    them closer than the calibration's speakers, and a merged cluster, once named,
    would enroll two people."""
    threshold: float | None = None
    """Raw score to join a cluster instead (null: from false_merge)."""


@dataclass
class Cluster:
    label: str
    total: np.ndarray
    """Sum of its closed turns' window embeddings."""
    last_seen: int
    """Stream sample where it was last heard."""
    turns: list[int] = field(default_factory=list)
    speech: list[np.ndarray] = field(default_factory=list)
    """int16 chunks, oldest first, at most keep_speech_s in all."""

    @property
    def centroid(self) -> np.ndarray:
        return l2_normalize(self.total)

    @property
    def speech_s(self) -> float:
        return sum(len(c) for c in self.speech) / SAMPLE_RATE


class UnknownClusters:
    def __init__(self, config: UnknownConfig, rule: AcceptRule, dim: int) -> None:
        self.config = config
        self.rule = rule
        self.dim = dim
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._clusters: dict[str, Cluster] = {}
            self._provisional: dict[int, str] = {}
            """Open turn id -> the cluster it created (empty until the turn closes)."""
            self._named: dict[str, str] = {}
            """Label -> the name a person gave it (the cluster itself is gone)."""
            self._next = 1

    # -- the decider's side ----------------------------------------------------------------

    def assign(self, turn: int, embedding: np.ndarray, speech_s: float, now: int) -> str:
        """The label for an open turn's evidence that named nobody enrolled."""
        with self._lock:
            known = [c for c in self._clusters.values() if c.turns]
            if known:
                scores = np.stack([c.centroid for c in known]) @ embedding
                best = int(np.argmax(scores))
                if scores[best] >= self.rule.cutoff(speech_s, len(known)):
                    return known[best].label
            label = self._provisional.get(turn)
            if label is None or label not in self._clusters:
                label = f"{PREFIX}{self._next}"
                self._next += 1
                self._clusters[label] = Cluster(label, np.zeros(self.dim, np.float32), now)
                self._provisional[turn] = label
            return label

    def commit(self, turn: int, label: str | None, total: np.ndarray, speech: list[np.ndarray],
               now: int) -> None:
        """A turn closed with ``label`` (None: an enrolled speaker, or no cluster)."""
        with self._lock:
            own = self._provisional.pop(turn, None)
            cluster = self._clusters.get(label) if label else None
            if own is not None and own != label:
                self._clusters.pop(own, None)
            if cluster is None:
                return
            cluster.total = cluster.total + total
            cluster.turns = [*cluster.turns[-(MAX_TURNS - 1):], turn]
            cluster.last_seen = now
            cluster.speech.extend(speech)
            keep_latest(cluster.speech, int(self.config.keep_speech_s * SAMPLE_RATE))
            self._evict(keep=cluster.label)

    def expire(self, now: int) -> None:
        """Forget clusters unheard for ``max_age_s``."""
        limit = now - int(self.config.max_age_s * SAMPLE_RATE)
        with self._lock:
            busy = set(self._provisional.values())
            for label in [k for k, c in self._clusters.items()
                          if c.last_seen < limit and k not in busy]:
                del self._clusters[label]

    # -- anyone's side -------------------------------------------------------------------------

    def labels(self) -> dict[str, dict[str, object]]:
        """Each cluster that holds a closed turn: its turns and seconds of kept speech."""
        with self._lock:
            return {c.label: {"turns": list(c.turns), "speech_s": round(c.speech_s, 2)}
                    for c in self._clusters.values() if c.turns}

    def speech(self, label: str) -> np.ndarray | None:
        with self._lock:
            c = self._clusters.get(label)
            return np.concatenate(c.speech) if c is not None and c.speech else None

    def take(self, label: str) -> Cluster | None:
        """Remove a cluster that holds turns, to name it: its turns and speech."""
        with self._lock:
            c = self._clusters.get(label)
            if c is None or not c.turns:
                return None
            return self._clusters.pop(label)

    def put_back(self, cluster: Cluster) -> None:
        """Undo ``take`` (the name was refused). A turn that closed under its label in
        between is not in it: only the time of one enrollment attempt."""
        with self._lock:
            self._clusters.setdefault(cluster.label, cluster)

    def name(self, label: str, speaker: str) -> None:
        """From now on, report ``label`` (taken and enrolled) as ``speaker``."""
        with self._lock:
            self._named[label] = speaker

    def named(self, label: str) -> str | None:
        with self._lock:
            return self._named.get(label)

    # -- inside the lock ---------------------------------------------------------------------

    def _evict(self, keep: str) -> None:
        """At most max_clusters that hold turns: forget the one heard longest ago."""
        while True:
            real = [c for c in self._clusters.values() if c.turns and c.label != keep]
            if len(real) < self.config.max_clusters:
                return
            del self._clusters[min(real, key=lambda c: c.last_seen).label]
