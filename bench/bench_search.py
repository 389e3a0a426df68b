"""1:N search at 100k and 1M voiceprints: exact numpy against faiss and usearch (issue 10, §4).

This chose the index; the product's own (vggvox/search.py, faiss-cpu is now a
dependency) is measured by bench/bench_searcher.py.

    .venv/bin/pip install usearch      # measuring only
    .venv/bin/python bench/bench_search.py [--sizes 100000,1000000] [--queries N]
        [--methods faiss-ivfpq,usearch-f16,...] [--rescore-k K] [--build-threads 2] [--quick]

Voiceprints: the real enrolled speakers of shared/data/speech (CAM++), put at
random rows among SYNTHETIC voiceprints drawn from a Gaussian fitted to the real
enrollment embeddings and L2-normalised (bench/search_data.py). Queries: real
test utterances whole and 2 s windows cut from them; a fifth of the speakers
are never enrolled, so some queries are strangers (open set).

For each size it measures, with ONE thread per query (numpy/BLAS and faiss
pinned to 1 thread; index builds may use --build-threads):
- exact: ``db @ q`` and argmax, as vggvox/scoring.py does (ms per query);
- each ANN index: build time, RSS growth after the build (VmRSS from
  /proc/self/status) and peak growth during it (VmHWM), then for each search
  parameter the ms per decision (median, p95: search + exact float32
  re-scoring of the top --rescore-k candidates) and recall@1 against the exact
  top-1 on the same set: all queries, enrolled speakers', strangers'.

Other processes may share the CPU: timings are medians, and the load average
is printed with them.
"""

from __future__ import annotations

import os

# Before numpy loads: one BLAS thread, as a per-query decision in the daemon gets.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

try:  # the candidates being measured: not dependencies of vggvox (yet)
    import faiss
    import usearch
    from usearch.index import Index
except ImportError as e:
    sys.exit(f"bench_search: {e.name} is missing: .venv/bin/pip install faiss-cpu usearch")

import search_data as sd  # noqa: E402

TARGET_MS, TARGET_RECALL = 5.0, 0.995


@dataclass
class Candidate:
    """One index kind: how to build it, set its search knob, and search it."""

    name: str
    build: Callable[[np.ndarray, int], Any]
    set_param: Callable[[Any, int], None]
    search: Callable[[Any, np.ndarray, int], np.ndarray]
    params: list[int]
    knob: str
    k: int = 16  # candidates re-scored exactly


def _faiss_search(ix: Any, q: np.ndarray, k: int) -> np.ndarray:
    return ix.search(q[None], k)[1][0]


def faiss_hnsw(m: int, ef_c: int, params: list[int]) -> Candidate:
    def build(db: np.ndarray, threads: int) -> Any:
        faiss.omp_set_num_threads(threads)
        ix = faiss.IndexHNSWFlat(db.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = ef_c
        ix.add(db)
        return ix

    def set_param(ix: Any, ef: int) -> None:
        ix.hnsw.efSearch = ef

    name = f"faiss HNSWFlat M={m} efC={ef_c}"
    return Candidate(name, build, set_param, _faiss_search, params, "efSearch")


def faiss_ivf(codes: str, params: list[int], k: int) -> Candidate:
    """IVF with 2*sqrt(N) lists, trained on 50 vectors a list; ``codes``: Flat or PQ."""

    def build(db: np.ndarray, threads: int) -> Any:
        faiss.omp_set_num_threads(threads)
        nlist = int(2 * np.sqrt(len(db)))
        ix = faiss.index_factory(db.shape[1], f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(1)
        ix.train(db[np.sort(rng.choice(len(db), min(len(db), 50 * nlist), replace=False))])
        ix.add(db)
        return ix

    def set_param(ix: Any, nprobe: int) -> None:
        faiss.extract_index_ivf(ix).nprobe = nprobe

    name = f"faiss IVF2sqrtN,{codes}"
    return Candidate(name, build, set_param, _faiss_search, params, "nprobe", k)


def usearch_hnsw(dtype: str, m: int, ef_add: int, params: list[int]) -> Candidate:
    # i8 quantisation is only meaningful with the "cos" metric (with "ip" it
    # returns raw integer products); on unit vectors cos == ip anyway.
    metric = "cos" if dtype == "i8" else "ip"

    def build(db: np.ndarray, threads: int) -> Any:
        ix = Index(ndim=db.shape[1], metric=metric, dtype=dtype, connectivity=m,
                   expansion_add=ef_add)  # fmt: skip
        ix.add(np.arange(len(db), dtype=np.uint64), db, threads=threads)
        return ix

    def set_param(ix: Any, ef: int) -> None:
        ix.expansion_search = ef

    def search(ix: Any, q: np.ndarray, k: int) -> np.ndarray:
        return ix.search(q, k, threads=1).keys.astype(np.int64)

    return Candidate(f"usearch {dtype} M={m} efC={ef_add}", build, set_param, search, params, "ef")


def candidates(quick: bool) -> dict[str, Candidate]:
    """All index kinds by short name. HNSW builds dominate the run (~1 min at 100k)."""
    efs = [128, 512] if quick else [128, 256, 512]
    probes = [64, 256] if quick else [64, 128, 256, 512]
    return {
        "faiss-hnsw": faiss_hnsw(16, 64, efs),
        "faiss-ivf": faiss_ivf("Flat", probes, 16),
        # 4-bit fast-scan PQ (96 B/vector): scan many lists cheaply, re-score 100.
        "faiss-ivfpq": faiss_ivf("PQ96x4fs", probes, 100),
        "faiss-ivfpq48": faiss_ivf("PQ48x4fs", probes, 100),  # half the codes: 24 B/vector
        "usearch-f16": usearch_hnsw("f16", 16, 64, efs),
        "usearch-f32": usearch_hnsw("f32", 16, 64, efs),
        "usearch-i8": usearch_hnsw("i8", 16, 64, efs),
    }


@dataclass
class Row:
    size: int
    method: str
    param: str
    build_s: float | None
    rss_mb: float  # growth after build (exact: the voiceprint matrix itself)
    peak_mb: float | None
    p50: float
    p95: float
    recall: tuple[float, float, float] = field(default=(1.0, 1.0, 1.0))


def run_size(
    n: int, prints: dict, gauss: tuple, qs: sd.Queries, args: argparse.Namespace, rows: list[Row]
) -> None:
    gc.collect()
    base = sd.proc_kb("VmRSS")
    db = sd.build_database(n, prints, gauss, seed=args.seed)
    matrix_mb = (sd.proc_kb("VmRSS") - base) / 1024
    q = qs.vectors
    t = time.perf_counter()
    truth, _ = sd.exact_top1(db.vectors, q)
    own = {db.real_names[i]: r for i, r in enumerate(db.real_rows)}
    enrolled = ~qs.stranger
    right = np.array([own.get(s, -1) for s in qs.speaker]) == truth
    synth = ~np.isin(truth, db.real_rows)
    print(
        f"\n== {n:,} voiceprints ({len(db.real_rows)} real, {n - len(db.real_rows):,} synthetic); "
        f"matrix {matrix_mb:.0f} MB; ground truth {time.perf_counter() - t:.1f} s; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"   exact top-1 is the right speaker for {right[enrolled].mean():.1%} of enrolled "
        f"queries; a synthetic voiceprint for {synth[enrolled].mean():.1%} of them and "
        f"{synth[qs.stranger].mean():.1%} of strangers'"
    )

    # Exact: what scoring.py does per query. At 1M a subset is enough (~70 ms each).
    sub = q[: min(len(q), args.exact_queries)]
    _, ms = sd.time_queries(lambda v: int(np.argmax(db.vectors @ v)), sub)
    rows.append(Row(n, "exact numpy f32", "-", None, matrix_mb, None, *sd.p50_p95(ms)))
    report(rows[-1])

    for name in args.methods.split(","):
        c = candidates(args.quick)[name]
        c.params = [int(p) for p in args.params.split(",")] if args.params else c.params
        k = args.rescore_k or c.k
        gc.collect()
        before = sd.proc_kb("VmRSS")
        sd.reset_peak()
        t = time.perf_counter()
        ix = c.build(db.vectors, args.build_threads)
        build_s = time.perf_counter() - t
        rss = (sd.proc_kb("VmRSS") - before) / 1024
        peak = (sd.proc_kb("VmHWM") - before) / 1024
        faiss.omp_set_num_threads(1)
        for p in c.params:
            c.set_param(ix, p)

            def decide(v: np.ndarray, ix: Any = ix, c: Candidate = c, k: int = k) -> int:
                # Exact re-scoring of the candidates with the float32 voiceprints.
                cand = c.search(ix, v, k)
                cand = cand[cand >= 0]
                return int(cand[np.argmax(db.vectors[cand] @ v)])

            got, ms = sd.time_queries(decide, q)
            row = Row(n, c.name, f"{c.knob}={p}", build_s, rss, peak, *sd.p50_p95(ms))
            row.recall = sd.recalls(got, truth, qs.stranger)
            rows.append(row)
            report(rows[-1])
        del ix


HEADER = (
    f"{'size':>9} {'method':<30} {'param':<12} {'build s':>8} {'+RSS MB':>8} "
    f"{'peak MB':>8} {'p50 ms':>7} {'p95 ms':>7} {'R@1 all':>8} {'enrol':>7} {'strang':>7}"
)


def report(r: Row, header: bool = False) -> None:
    if header:
        print(HEADER)
    b = f"{r.build_s:8.1f}" if r.build_s is not None else f"{'-':>8}"
    pk = f"{r.peak_mb:8.0f}" if r.peak_mb is not None else f"{'-':>8}"
    print(
        f"{r.size:>9,} {r.method:<30} {r.param:<12} {b} {r.rss_mb:8.0f} {pk} "
        f"{r.p50:7.3f} {r.p95:7.3f} {r.recall[0]:8.2%} {r.recall[1]:7.2%} {r.recall[2]:7.2%}",
        flush=True,
    )


def recommend(rows: list[Row]) -> None:
    n = max(r.size for r in rows)
    ok = [
        r
        for r in rows
        if r.size == n
        and r.build_s is not None
        and r.p50 <= TARGET_MS
        and r.recall[0] >= TARGET_RECALL
    ]
    exact = [r for r in rows if r.method.startswith("exact")]
    for r in exact:  # exact cost is linear in N: where it crosses the 5 ms target
        print(
            f"exact at {r.size:,}: {r.p50:.2f} ms -> 5 ms reached near "
            f"{int(r.size * TARGET_MS / r.p50):,} voiceprints"
        )
    if not ok:
        print(f"no index met <= {TARGET_MS} ms and recall@1 >= {TARGET_RECALL:.1%} at {n:,}")
        return
    # Least added memory first, then the fastest.
    best = min(ok, key=lambda r: (round(r.rss_mb, -1), r.p50))
    print(f"meets the targets at {n:,}: " + "; ".join(f"{r.method} {r.param}" for r in ok))
    print(
        f"RECOMMENDED (least memory, then fastest): {best.method} {best.param}, "
        f"p50 {best.p50:.2f} ms, p95 {best.p95:.2f} ms, recall@1 {best.recall[0]:.2%}, "
        f"+{best.rss_mb:.0f} MB over the matrix, build {best.build_s:.0f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=0, help="use N queries (0: all)")
    ap.add_argument("--exact-queries", type=int, default=300, help="queries timed exactly")
    ap.add_argument("--rescore-k", type=int, default=0, help="0: 16, or 100 for PQ")
    ap.add_argument("--methods", help=f"comma-separated, of {','.join(candidates(False))}")
    ap.add_argument("--params", help="search knob values (ef or nprobe) for every method")
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="100k only, two indexes, two knobs")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    if not args.methods:  # HNSW builds are the slow part: ~1 min at 100k, ~10 at 1M
        args.methods = "faiss-ivfpq,usearch-f16" if args.quick else ",".join(candidates(False))
    faiss.omp_set_num_threads(1)

    real = sd.real_embeddings(args.model)
    prints, qs = sd.split(real)
    if args.queries:
        pick = np.sort(
            np.random.default_rng(args.seed).permutation(len(qs.vectors))[: args.queries]
        )
        qs = sd.Queries(qs.vectors[pick], qs.kind[pick], qs.speaker[pick], qs.stranger[pick])
    gauss = sd.fit_gaussian(real, prints)
    print(
        f"{len(prints)} enrolled speakers; {len(qs.vectors)} queries "
        f"({(qs.kind == 'utt').sum()} whole utterances, {(qs.kind == 'win2s').sum()} 2 s windows; "
        f"{qs.stranger.sum()} from strangers); padding: SYNTHETIC voiceprints ~ Gaussian fitted "
        f"to the real enrollment embeddings, L2-normalised"
    )
    print(sd.distribution_check(prints, gauss, qs, args.seed))
    print(
        f"faiss {faiss.__version__}, usearch {usearch.__version__}; one thread per query; "
        f"builds on {args.build_threads}; re-score top {args.rescore_k or 'k'}; "
        f"baseline RSS {sd.proc_kb('VmRSS') / 1024:.0f} MB"
    )

    rows: list[Row] = []
    print(HEADER)
    for n in sizes:
        run_size(n, prints, gauss, qs, args, rows)
    print("\nSummary")
    print(HEADER)
    for r in rows:
        report(r)
    recommend(rows)


if __name__ == "__main__":
    main()
