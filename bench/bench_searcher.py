"""The product's own 1:N search (vggvox.search.Searcher) at 100k and 1M voiceprints.

    .venv/bin/python bench/bench_searcher.py [--sizes 100000,1000000] [--queries N]
        [--exact-queries 100] [--nprobe 768] [--rescore 100]

bench/bench_search.py chose the index (faiss IVF-PQ fast-scan + exact re-scoring);
this measures what ships, with its default SearchSettings, through the same calls
the daemon and batch-offline make. The data are bench_search's (bench/search_data.py):
the real enrolled speakers of shared/data/speech (CAM++) among SYNTHETIC
voiceprints drawn from a Gaussian fitted to the real enrollment embeddings; the
queries are real test utterances and 2 s windows, a fifth of them strangers'.

For each size, ONE thread (BLAS and faiss), with the process's RSS (VmRSS):
- the matrix alone (RSS growth when the voiceprints are made);
- exact search, Searcher below its threshold (ms per query on --exact-queries);
- the index: build time, RSS growth after the build and peak growth during it;
- ms per decision (``search(query, 5)`` one query at a time: index search and
  exact re-scoring), p50 and p95, and recall@1 against exact search (all
  queries, enrolled speakers', strangers');
- a newer snapshot with one voiceprint added (an enrollment): ``derive`` time and
  that it reused the index.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy loads: one thread per decision, as in the daemon

import argparse  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import search_data as sd  # noqa: E402

from vggvox.embedder import l2_normalize  # noqa: E402
from vggvox.search import Searcher, SearchSettings  # noqa: E402


def mb(kb: int) -> float:
    return kb / 1024


def run_size(n: int, prints: dict, gauss: tuple, qs: sd.Queries, args: argparse.Namespace,
             settings: SearchSettings) -> None:
    gc.collect()
    base = sd.proc_kb("VmRSS")
    db = sd.build_database(n, prints, gauss, seed=args.seed)
    names = [f"synthetic-{i:07d}" for i in range(n)]
    for row, name in zip(db.real_rows, db.real_names, strict=True):
        names[row] = name
    gc.collect()
    with_matrix = sd.proc_kb("VmRSS")
    t = time.perf_counter()
    truth, _ = sd.exact_top1(db.vectors, qs.vectors)
    print(f"\n== {n:,} voiceprints ({len(db.real_rows)} real, {n - len(db.real_rows):,} "
          f"SYNTHETIC); ground truth {time.perf_counter() - t:.1f} s; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"   RSS: {mb(base):.0f} MB before, {mb(with_matrix):.0f} MB with the matrix "
          f"(+{mb(with_matrix - base):.0f} MB; names list included)")

    exact = Searcher(names, db.vectors, "cosine", replace(settings, index_above=n + 1))
    sub = qs.vectors[: args.exact_queries]
    _, ms = sd.time_queries(lambda v: len(exact.search(v, 5)[0]), sub)
    p50, p95 = sd.p50_p95(ms)
    print(f"   exact (Searcher below its threshold): p50 {p50:.2f} ms, p95 {p95:.2f} ms "
          f"({len(sub)} queries)")

    s = Searcher(names, db.vectors, "cosine", settings)
    assert s.indexed
    gc.collect()
    sd.reset_peak()
    before = sd.proc_kb("VmRSS")
    s.prepare()
    gc.collect()
    after, peak = sd.proc_kb("VmRSS"), sd.proc_kb("VmHWM")
    print(f"   index build {s.build_s:.1f} s (1 thread); RSS {mb(after):.0f} MB with the index "
          f"(+{mb(after - before):.0f} MB over the matrix; peak +{mb(peak - before):.0f} MB "
          f"during the build)")
    row = {name: i for i, name in enumerate(names)}
    got, ms = sd.time_queries(lambda v: row[s.search(v, 5)[0][0].name], qs.vectors)
    p50, p95 = sd.p50_p95(ms)
    r_all, r_enr, r_str = sd.recalls(got, truth, qs.stranger)
    print(f"   indexed decision: p50 {p50:.2f} ms, p95 {p95:.2f} ms over {len(ms)} queries; "
          f"recall@1 {r_all:.2%} (enrolled {r_enr:.2%}, strangers {r_str:.2%})")

    # A new speaker: a real voiceprint, moved (cosine ~0.8 to it).
    noise = np.random.default_rng(args.seed + 7).standard_normal((1, db.vectors.shape[1]))
    extra = l2_normalize(db.vectors[db.real_rows[:1]] + 0.05 * noise).astype(np.float32)
    t = time.perf_counter()
    s2 = s.derive([*names, "zz-new"], np.concatenate([db.vectors, extra]))
    took = time.perf_counter() - t
    print(f"   one enrollment later: derive {took:.2f} s, index reused: "
          f"{s2._index is s._index}; new speaker found: {s2.search(extra[0], 1)[0][0].name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=0, help="use N queries (0: all)")
    ap.add_argument("--exact-queries", type=int, default=100)
    ap.add_argument("--nprobe", type=int, default=SearchSettings.nprobe)
    ap.add_argument("--rescore", type=int, default=SearchSettings.rescore)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = SearchSettings(index_above=1000, nprobe=args.nprobe, rescore=args.rescore)

    real = sd.real_embeddings(args.model)
    prints, qs = sd.split(real)
    if args.queries:
        pick = np.sort(np.random.default_rng(args.seed).permutation(len(qs.vectors))
                       [: args.queries])
        qs = sd.Queries(qs.vectors[pick], qs.kind[pick], qs.speaker[pick], qs.stranger[pick])
    gauss = sd.fit_gaussian(real, prints)
    import faiss  # after the Searcher's first use would do too: only for the version

    print(f"{len(prints)} enrolled speakers; {len(qs.vectors)} queries ({qs.stranger.sum()} "
          f"strangers'); padding: SYNTHETIC voiceprints ~ Gaussian fitted to the real "
          f"enrollment embeddings, L2-normalised; faiss {faiss.__version__}; {settings}")
    for n in [int(x) for x in args.sizes.split(",")]:
        run_size(n, prints, gauss, qs, args, settings)


if __name__ == "__main__":
    main()
