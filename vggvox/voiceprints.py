"""An in-memory set of voiceprints: add, remove, search, top-k.

It knows nothing of SQLite: the store persists enrollments and loads into a
set (``VoiceprintSet.from_store``), and anyone can build one from embeddings
alone. Readers take a ``snapshot()``: names and matrix swapped in one
assignment, so a reader in another thread never pairs new names with an old
matrix.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

from vggvox.scoring import Match, Scorer, voiceprint
from vggvox.store import ModelId, VoiceprintStore, check_name


@dataclass(frozen=True)
class Snapshot:
    """Names and their voiceprints (one unit-length row each), at one moment."""

    names: tuple[str, ...]
    matrix: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


class VoiceprintSet:
    """Voiceprints of one model, by speaker name. Safe to share between threads."""

    def __init__(self, dim: int, model: str = "", metric: str = "cosine") -> None:
        self.dim = dim
        self.model = model
        """The model tag that made the embeddings (informative; the store enforces it)."""
        self.scorer = Scorer(metric)
        self._prints: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._snapshot = Snapshot((), np.zeros((0, dim), dtype=np.float32))

    @classmethod
    def from_store(cls, store: VoiceprintStore, model: str | ModelId, dim: int,
                   metric: str = "cosine") -> VoiceprintSet:
        """The store's voiceprints of ``model``: give its ``ModelId`` where known, so that
        the store checks the model file's sha256, not only its tag."""
        if isinstance(model, ModelId):
            s = cls(dim, model.tag, metric)
            s.load(store, model)
        else:
            s = cls(dim, model, metric)
            s.load(store)
        return s

    def load(self, store: VoiceprintStore, model: ModelId | None = None) -> None:
        """Replace every voiceprint with the store's, of this set's model (checked by its
        tag), or of ``model`` (checked by its file's sha256: give it where known)."""
        names, matrix = store.voiceprints(model or self.model)
        with self._lock:
            self._prints = {n: matrix[i] for i, n in enumerate(names)}
            self._publish()

    def add(self, name: str, embeddings: np.ndarray) -> None:
        """Set ``name``'s voiceprint to the normalised mean of ``embeddings``."""
        name = check_name(name)
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if emb.shape[1] != self.dim:
            raise ValueError(f"embeddings of size {emb.shape[1]}, this set holds {self.dim}")
        with self._lock:
            self._prints[name] = voiceprint(emb)
            self._publish()

    def remove(self, name: str) -> bool:
        name = unicodedata.normalize("NFC", name)
        with self._lock:
            gone = self._prints.pop(name, None) is not None
            if gone:
                self._publish()
            return gone

    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def names(self) -> tuple[str, ...]:
        return self._snapshot.names

    def __len__(self) -> int:
        return len(self._snapshot)

    def __contains__(self, name: object) -> bool:
        return name in self._snapshot.names

    def scores(self, embeddings: np.ndarray) -> tuple[Snapshot, np.ndarray]:
        """Scores of embeddings (n, dim) against every voiceprint: (snapshot, (n, speakers))."""
        snap = self._snapshot
        return snap, np.atleast_2d(self.scorer.scores(embeddings, snap.matrix))

    def search(self, embedding: np.ndarray, k: int = 5) -> list[Match]:
        """The k best speakers for one embedding, best first."""
        snap, scores = self.scores(embedding)
        return self.scorer.top_k(scores[0], list(snap.names), k)

    def _publish(self) -> None:
        names = tuple(sorted(self._prints))
        matrix = (np.stack([self._prints[n] for n in names]) if names
                  else np.zeros((0, self.dim), dtype=np.float32))
        self._snapshot = Snapshot(names, matrix.astype(np.float32))
