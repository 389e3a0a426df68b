"""1:N search over very large enrolled sets: exact below a size, an ANN index above it.

Why: exact scoring (``scoring.Scorer``) reads every voiceprint for every query. That
is memory-bound: about 10 ms per query at 100k voiceprints and 67 ms at 1M on one
core, where a live decision may take 5 ms. So from ``index_above`` voiceprints on,
a faiss IVF index with 4-bit fast-scan product-quantised codes
(``IVF{nlist},PQ{m}x4fs``, inner product; 48 bytes a voiceprint at 192 dimensions)
proposes the ``rescore`` best candidates of each query, and those are re-scored
exactly against the snapshot's own float32 matrix (no copy of it is kept, unlike
faiss's IndexRefineFlat): every score returned is exact, only the candidate list is
approximate. Of the indexes measured (bench/bench_search.py, docs/benchmarks.md)
it alone met 5 ms and recall@1 >= 99.5 % at 1M; HNSW lost recall on these vectors.

Metrics: voiceprints are unit length, so cosine is the inner product, and for any
query ``|q - v|^2 = |q|^2 + 1 - 2 q.v`` ranks voiceprints exactly as ``q.v`` does:
one inner-product index serves both metrics, and the re-scoring goes through
``Scorer``, so scores are the metric's own. Under ``euclidean`` a matrix whose rows
are not unit length is always searched exactly.

Changes: ``derive`` gives the searcher of a newer snapshot, reusing this one's index
while at most ``max_delta`` voiceprints were added, changed or removed since it was
built (the added and changed ones are scored exactly beside it), so one enrollment
does not rebuild an index of a million. faiss is imported only when an index is built.

Measured (bench/bench_searcher.py, one thread): at 1M, build 24 s, +91 MB over the
733 MB matrix, 3.7 ms per query (p95 4.3), recall@1 99.9 % against exact; at 100k,
build 2.7 s, +27 MB, 1.0 ms, 100 %.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from vggvox.scoring import Match, Scorer

log = logging.getLogger(__name__)

_QUERY_BLOCK_FLOATS = 1 << 24
"""Exact path: queries are scored in blocks of at most this many scores (64 MB)."""


@dataclass(frozen=True)
class SearchSettings:
    """How a set of voiceprints is searched; the defaults are the measured ones."""

    index_above: int = 50_000
    """Use the index at or above this many voiceprints (at least 1,000: an index needs
    that many to train, and exact is faster there); exact below. Exact costs about
    0.1 ms per 1,000 voiceprints per query (10 ms at 100k): 50k is where it reaches
    the 5 ms a decision may take."""
    nprobe: int = 768
    """Inverted lists scanned per query (at most nlist): recall against time."""
    rescore: int = 100
    """Candidates per query re-scored exactly with the float32 voiceprints."""
    nlist: int = 0
    """Inverted lists; 0: 2 * sqrt(voiceprints), at most voiceprints / 39."""
    pq_m: int = 0
    """Product-quantiser codes per voiceprint (4 bits each); 0: dimension / 2. Must
    divide the dimension."""
    train_per_list: int = 50
    """Training voiceprints per inverted list (a random sample)."""
    max_delta: int = 10_000
    """Voiceprints added, changed or removed since the index was built that are
    scored beside it (exactly) before a new one is built."""
    threads: int = 1
    """faiss OpenMP threads, for building and searching (process-wide in faiss)."""
    build_on_search: bool = True
    """Build the index on the first search that needs it. False: only ``prepare``
    builds it (e.g. in a background thread), and searches until then are exact."""
    seed: int = 0

    def __post_init__(self) -> None:
        least = {"index_above": 1000, "nprobe": 1, "rescore": 1, "nlist": 0, "pq_m": 0,
                 "train_per_list": 39, "max_delta": 0, "threads": 1}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "build_on_search":
                if not isinstance(value, bool):
                    raise ValueError(f"'search.{f.name}' must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"'search.{f.name}' must be an integer, got {value!r}")
            elif f.name in least and value < least[f.name]:
                raise ValueError(f"'search.{f.name}' must be >= {least[f.name]}, got {value!r}")


def _unit_rows(matrix: np.ndarray, tol: float = 1e-3) -> bool:
    sq = np.einsum("ij,ij->i", matrix, matrix)  # no (N, D) temporary
    return bool(np.all(np.abs(sq - 1.0) <= tol))


def _same_rows(old_names: Sequence[str], old: np.ndarray, names: Sequence[str],
               new: np.ndarray, block: int = 65_536) -> np.ndarray:
    """For each row of ``new``: its row in ``old`` (same name, same vector), or -1."""
    if tuple(old_names) == tuple(names):
        rows = np.arange(len(names), dtype=np.int64)
    else:
        pos = {n: i for i, n in enumerate(old_names)}
        rows = np.fromiter((pos.get(n, -1) for n in names), dtype=np.int64, count=len(names))
    for a in range(0, len(rows), block):
        r = rows[a:a + block]
        hit = np.nonzero(r >= 0)[0]
        differ = np.any(new[a + hit] != old[r[hit]], axis=1)
        r[hit[differ]] = -1
    return rows


def _faiss() -> Any:
    """faiss, imported on first use: small sets never load it. Its loader logs at INFO
    each SIMD library it fails to find before the one it loads: not our log's news."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


class Searcher:
    """Top-k speakers for query embeddings against one snapshot of voiceprints.

    Built cheaply; the index (if this size needs one) is built once, on the first
    search or on ``prepare``, never per query. Safe to share between threads.
    """

    def __init__(self, names: Sequence[str], matrix: np.ndarray, metric: str = "cosine",
                 settings: SearchSettings | None = None) -> None:
        self.names = tuple(names)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if self.matrix.shape[0] != len(self.names):
            raise ValueError(f"{len(self.names)} names for {self.matrix.shape[0]} voiceprints")
        self.scorer = Scorer(metric)
        self.settings = settings or SearchSettings()
        self.indexed = len(self.names) >= self.settings.index_above and len(self.names) > 0
        """Whether this size is searched through the index (once it is built)."""
        if self.indexed and metric == "euclidean" and not _unit_rows(self.matrix):
            log.warning("euclidean search over voiceprints that are not unit length: exact")
            self.indexed = False
        self._names = list(self.names)
        self._lock = threading.Lock()
        self._index: Any = None
        self._id_rows: np.ndarray | None = None
        """Row of this snapshot for each id of the index, -1 for a voiceprint since gone."""
        self._fresh = np.zeros(0, dtype=np.int64)
        """Rows the index does not hold (added or changed since it was built)."""
        self.build_s: float | None = None

    @property
    def ready(self) -> bool:
        """Whether a search is served by the index now (False: exact)."""
        return self._index is not None

    def prepare(self) -> None:
        """Build the index now, if this size needs one and it has none (blocking)."""
        if self.indexed:
            with self._lock:
                if self._index is None:
                    self._build()

    def derive(self, names: Sequence[str], matrix: np.ndarray,
               old_of_new: np.ndarray | None = None) -> Searcher:
        """The searcher of a newer snapshot, sharing this one's index while few changed.
        ``old_of_new``: each new row's row here, -1 for a new or changed one, where the
        caller knows it (``VoiceprintSet.update``); else every row is compared (0.05-0.15 s
        at 100,000)."""
        new = Searcher(names, matrix, self.scorer.metric, self.settings)
        index, id_rows = self._index, self._id_rows
        if not new.indexed or index is None or id_rows is None:
            return new
        if old_of_new is None:
            old_of_new = _same_rows(self.names, self.matrix, new.names, new.matrix)
        kept = old_of_new >= 0
        new_of_old = np.full(len(self.names) + 1, -1, dtype=np.int64)  # [-1] stays -1
        new_of_old[old_of_new[kept]] = np.nonzero(kept)[0]
        was_fresh = np.zeros(len(self.names), dtype=bool)
        was_fresh[self._fresh] = True
        fresh = np.nonzero(~kept | (kept & was_fresh[np.maximum(old_of_new, 0)]))[0]
        rows = new_of_old[id_rows]
        changed = len(fresh) + int(np.count_nonzero(rows < 0))
        if changed > self.settings.max_delta:
            log.info("%d voiceprints changed since the index was built: a new one is due",
                     changed)
            return new
        new._index, new._id_rows, new._fresh = index, rows, fresh
        new.build_s = self.build_s
        return new

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Match]]:
        """The k best speakers of each query (rows of ``queries``, or one 1-D query),
        best first, with exact scores."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if k <= 0 or not self.names:
            return [[] for _ in q]
        if q.shape[1] != self.matrix.shape[1]:
            raise ValueError(f"queries of size {q.shape[1]}, voiceprints of {self.matrix.shape[1]}")
        if self.indexed and self._index is None and self.settings.build_on_search:
            if self._lock.acquire(blocking=False):  # another thread building: exact now
                try:
                    if self._index is None:
                        self._build()
                finally:
                    self._lock.release()
        if self._index is None:
            return self._exact(q, k)
        return self._indexed(q, k)

    def _exact(self, q: np.ndarray, k: int) -> list[list[Match]]:
        out: list[list[Match]] = []
        step = max(1, _QUERY_BLOCK_FLOATS // len(self.names))
        for a in range(0, len(q), step):
            scores = np.atleast_2d(self.scorer.scores(q[a:a + step], self.matrix))
            out += [Scorer.top_k(row, self._names, k) for row in scores]
        return out

    def _indexed(self, q: np.ndarray, k: int) -> list[list[Match]]:
        faiss = _faiss()
        assert self._id_rows is not None
        faiss.omp_set_num_threads(self.settings.threads)
        depth = min(self.settings.rescore, self._index.ntotal)
        _, ids = self._index.search(np.ascontiguousarray(q), depth)
        rows = np.where(ids >= 0, self._id_rows[np.maximum(ids, 0)], -1)
        out = []
        for i in range(len(q)):
            cand = rows[i][rows[i] >= 0]
            if len(self._fresh):
                cand = np.concatenate([cand, self._fresh])
            scores = self.scorer.scores(q[i], self.matrix[cand])
            top = min(k, len(cand))
            best = np.argpartition(-scores, top - 1)[:top] if top else cand[:0]
            best = best[np.argsort(-scores[best], kind="stable")]
            out.append([Match(self._names[cand[j]], float(scores[j])) for j in best])
        return out

    def _build(self) -> None:
        faiss = _faiss()
        s, n, dim = self.settings, len(self.names), self.matrix.shape[1]
        m = s.pq_m or dim // 2
        if m < 1 or dim % m:
            raise ValueError(f"'search.pq_m' must divide the dimension {dim}, got {m}")
        nlist = s.nlist or max(1, min(int(2 * np.sqrt(n)), n // 39))
        t = time.perf_counter()
        faiss.omp_set_num_threads(s.threads)
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x4fs", faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(s.seed)
        sample = np.sort(rng.choice(n, min(n, s.train_per_list * nlist), replace=False))
        index.train(self.matrix[sample])
        index.add(self.matrix)
        faiss.extract_index_ivf(index).nprobe = min(s.nprobe, nlist)
        self._id_rows = np.arange(n, dtype=np.int64)
        self._fresh = np.zeros(0, dtype=np.int64)
        self._index = index
        self.build_s = time.perf_counter() - t
        log.info("search index over %d voiceprints (IVF%d,PQ%dx4fs, nprobe %d) built in "
                 "%.1f s", n, nlist, m, min(s.nprobe, nlist), self.build_s)
