"""An in-memory set of voiceprints: add, remove, search, top-k.

It knows nothing of SQLite: the store persists enrollments and loads into a
set (``VoiceprintSet.from_store``), and anyone can build one from embeddings
alone. Readers take a ``snapshot()``: names and matrix swapped in one
assignment, so a reader in another thread never pairs new names with an old
matrix. ``search`` goes through a ``vggvox.search.Searcher`` of the current
snapshot: exact below ``SearchSettings.index_above`` voiceprints, an
approximate index with exact re-scoring at or above it (built once, and reused
across small changes); ``scores`` is always exact, over every speaker.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggvox.scoring import Match, Scorer, voiceprint
from vggvox.search import Searcher, SearchSettings
from vggvox.store import ModelId, check_name
from vggvox.storeapi import Store


@dataclass(frozen=True)
class Snapshot:
    """Names and their voiceprints (one unit-length row each), at one moment."""

    names: tuple[str, ...]
    matrix: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


class VoiceprintSet:
    """Voiceprints of one model, by speaker name. Safe to share between threads."""

    def __init__(self, dim: int, model: str = "", metric: str = "cosine",
                 search: SearchSettings | None = None) -> None:
        self.dim = dim
        self.model = model
        """The model tag that made the embeddings (informative; the store enforces it)."""
        self.scorer = Scorer(metric)
        self.search_settings = search or SearchSettings()
        self._prints: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._snapshot = Snapshot((), np.zeros((0, dim), dtype=np.float32))
        self._search_lock = threading.Lock()
        self._searcher = Searcher((), self._snapshot.matrix, metric, self.search_settings)
        self._searched = self._snapshot
        """The snapshot ``_searcher`` searches."""

    @classmethod
    def from_store(cls, store: Store, model: str | ModelId, dim: int,
                   metric: str = "cosine", search: SearchSettings | None = None
                   ) -> VoiceprintSet:
        """The store's voiceprints of ``model``: give its ``ModelId`` where known, so that
        the store checks the model file's sha256, not only its tag."""
        if isinstance(model, ModelId):
            s = cls(dim, model.tag, metric, search)
            s.load(store, model)
        else:
            s = cls(dim, model, metric, search)
            s.load(store)
        return s

    def load(self, store: Store, model: ModelId | None = None) -> None:
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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as its settings and voiceprints, bit for bit (a batch worker on another
        machine gets a copy); the copy has locks and a searcher of its own."""
        with self._lock:
            prints = dict(self._prints)
        return _rebuilt, (self.dim, self.model, self.scorer.metric, self.search_settings,
                          prints)

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

    def searcher(self) -> Searcher:
        """The searcher of the current snapshot: derived from the previous one on the
        first call after a change (reusing its index while few voiceprints changed;
        1.5 to 3 s at 1M), then the same object until the next change."""
        with self._search_lock:
            snap = self._snapshot
            if self._searched is not snap:
                self._searcher = self._searcher.derive(snap.names, snap.matrix)
                self._searched = snap
            return self._searcher

    @property
    def last_searcher(self) -> Searcher:
        """The searcher made last, without making one for a newer snapshot (that can take
        seconds at a million): for reports, not for searching."""
        return self._searcher

    def prepare_search(self) -> None:
        """Build the current snapshot's index now if its size needs one and it has none
        (about a minute at 1M on one core: see ``vggvox.search``). Call it after a load,
        from a thread that may wait, with ``SearchSettings.build_on_search`` False, so
        that no decision waits for it: they are exact until it is done."""
        while True:
            s = self.searcher()
            s.prepare()
            if self._adopt(s):
                return

    def _adopt(self, built: Searcher) -> bool:
        """After ``built``'s index is done: if the snapshot changed meanwhile, the current
        searcher (made without it) takes it over. False: still too many changes."""
        with self._search_lock:
            now = self._searcher
            if now is built or now.ready or not now.indexed:
                return True
            self._searcher = built.derive(self._searched.names, self._searched.matrix)
            return self._searcher.ready

    def search(self, embedding: np.ndarray, k: int = 5) -> list[Match]:
        """The k best speakers for one embedding, best first, with exact scores."""
        return self.searcher().search(embedding, k)[0]

    def search_many(self, embeddings: np.ndarray, k: int = 5) -> list[list[Match]]:
        """The k best speakers of each embedding (n, dim), best first."""
        return self.searcher().search(embeddings, k)

    def _publish(self) -> None:
        names = tuple(sorted(self._prints))
        matrix = (np.stack([self._prints[n] for n in names]) if names
                  else np.zeros((0, self.dim), dtype=np.float32))
        self._snapshot = Snapshot(names, matrix.astype(np.float32, copy=False))


def _rebuilt(dim: int, model: str, metric: str, search: SearchSettings,
             prints: dict[str, np.ndarray]) -> VoiceprintSet:
    """A pickled ``VoiceprintSet`` again (``VoiceprintSet.__reduce__``)."""
    s = VoiceprintSet(dim, model, metric, search)
    s._prints = prints
    s._publish()
    return s
