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
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np

from vggvox.scoring import Match, Scorer, voiceprint
from vggvox.search import Searcher, SearchSettings
from vggvox.store import ModelId, check_name
from vggvox.storeapi import Store

_SERIALS = count(1)


@dataclass(frozen=True)
class Snapshot:
    """Names and their voiceprints (one unit-length row each), at one moment."""

    names: tuple[str, ...]
    matrix: np.ndarray
    serial: int = field(default_factory=lambda: next(_SERIALS), compare=False)
    rows_in: tuple[int, np.ndarray] | None = field(default=None, compare=False)
    """(serial of an older snapshot, each row's row there or -1 where new or changed),
    from ``VoiceprintSet.update``: the searcher of that snapshot derives this one's
    without comparing every row (``Searcher.derive``)."""

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
        self._dict: dict[str, np.ndarray] | None = {}
        """Each speaker's voiceprint (None: read them from the snapshot when needed)."""
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
        if list(names) != sorted(names):
            order = sorted(range(len(names)), key=names.__getitem__)
            names, matrix = [names[i] for i in order], matrix[order]
        matrix = np.ascontiguousarray(matrix, dtype=np.float32) if len(names) else \
            np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # the store's matrix as it is: no copy, no stack of its rows
            self._snapshot, self._dict = Snapshot(tuple(names), matrix), None

    @property
    def _prints(self) -> dict[str, np.ndarray]:
        """Each speaker's voiceprint, by name (views of the snapshot's rows after a
        ``load`` or ``update``, which do not keep this dict)."""
        if self._dict is None:
            snap = self._snapshot
            self._dict = {n: snap.matrix[i] for i, n in enumerate(snap.names)}
        return self._dict

    def update(self, prints: Mapping[str, np.ndarray], gone: Iterable[str] = ()) -> None:
        """Set these speakers' voiceprints (as ``load`` takes them: unit rows, used as they
        are) and remove ``gone`` (those held), in one new snapshot made from the last one:
        its rows copied once, changed rows replaced, new ones inserted in order (0.03 s at
        100,000, where a whole rebuild took 0.2-0.4 s). Readers see the old snapshot or
        the new one, whole."""
        with self._lock:
            before = self._snapshot
            patched = _patched(before, self.dim, prints, gone)
            if patched is None:
                return
            snap, old_rows = patched
            searched = self._searched  # may change meanwhile: the serial says which it was
            if before is searched:
                rows_in: tuple[int, np.ndarray] | None = (searched.serial, old_rows)
            elif before.rows_in is not None and before.rows_in[0] == searched.serial:
                rows = np.append(before.rows_in[1], -1)  # [-1]: a new row stays new
                rows_in = (searched.serial, rows[old_rows])
            else:
                rows_in = None
            self._snapshot = Snapshot(snap.names, snap.matrix, rows_in=rows_in)
            self._dict = None

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
                hint = snap.rows_in
                old_of_new = hint[1] if hint and hint[0] == self._searched.serial else None
                self._searcher = self._searcher.derive(snap.names, snap.matrix, old_of_new)
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


def _patched(snap: Snapshot, dim: int, prints: Mapping[str, np.ndarray], gone: Iterable[str]
             ) -> tuple[Snapshot, np.ndarray] | None:
    """``snap`` with ``prints`` set and ``gone`` removed, and each new row's row in
    ``snap`` (-1: new or changed); None: nothing to do."""
    names = list(snap.names)
    old_rows = np.arange(len(names), dtype=np.int64)

    def row(name: str) -> int | None:
        i = bisect_left(names, name)
        return i if i < len(names) and names[i] == name else None

    drop = sorted({i for n in gone if n not in prints and (i := row(n)) is not None})
    if not drop and not prints:
        return None
    if drop:
        keep = np.ones(len(names), dtype=bool)
        keep[drop] = False
        matrix, old_rows = snap.matrix[keep], old_rows[keep]
        names = [n for n, k in zip(names, keep.tolist(), strict=True) if k]
    else:
        matrix = snap.matrix.copy()
    new: dict[str, np.ndarray] = {}
    for name, vector in prints.items():
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != dim:
            raise ValueError(f"a voiceprint of size {v.shape[0]}, this set holds {dim}")
        if (i := row(name)) is not None:
            matrix[i], old_rows[i] = v, -1
        else:
            new[name] = v
    if new:
        added = sorted(new)
        at = [bisect_left(names, n) for n in added]
        rows = np.stack([new[n] for n in added])
        matrix = np.insert(matrix, at, rows, axis=0)
        old_rows = np.insert(old_rows, at, -1)
        for offset, (i, n) in enumerate(zip(at, added, strict=True)):
            names.insert(i + offset, n)
    return Snapshot(tuple(names), np.ascontiguousarray(matrix, dtype=np.float32)), old_rows


def _rebuilt(dim: int, model: str, metric: str, search: SearchSettings,
             prints: dict[str, np.ndarray]) -> VoiceprintSet:
    """A pickled ``VoiceprintSet`` again (``VoiceprintSet.__reduce__``)."""
    s = VoiceprintSet(dim, model, metric, search)
    s._dict = prints
    s._publish()
    return s
