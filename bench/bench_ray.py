"""Batch embedding on Ray against the local ``--workers`` pool, on the same files.

    .venv/bin/python bench/bench_ray.py [--files 120] [--repeat 2] [--model campplus-int8]

Runs, on the shared speech data's test list (no cache, one ONNX thread per worker):
- local: in-process (1 worker), and the fork pool (2 workers);
- Ray: one node with 2 CPUs, then two nodes with 1 CPU each (a head and a node
  joining it, ``tests/raycluster.py``), with the pool run again while each is up;
each the way batch-offline runs it (``jobs._embed_one`` over the files longest
first; ``raybatch.ordered_map`` on Ray). Prints files per second over the whole
call (connection, worker start and model loads included), the time to the first
result, Ray's own cost per file (the same shards of a
function that does nothing), each worker's peak RSS and the resident memory of the
cluster's own processes (GCS, raylets, agents); and checks that every run's
embeddings are the in-process run's, bit for bit. Best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchkit import SPEECH, rss_mb
from raycluster import RayCluster

from vggvox.eval.lists import read_utterances
from vggvox.modelcard import resolve_card
from vggvox_client import raybatch
from vggvox_client.jobs import (
    Embedded,
    JobSettings,
    _embed_one,
    _longest_first,
    load_worker_model,
    worker_pool,
)


class PeakRss(threading.Thread):
    """The peak RSS of each process ``pids()`` names, sampled every 50 ms."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.pids, self.stop = pids, threading.Event()
        self.peak: dict[int, float] = {}

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for p in self.pids():
                try:
                    self.peak[p] = max(self.peak.get(p, 0.0), rss_mb(p))
                except OSError:
                    pass  # gone between the listing and the read

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def children() -> list[int]:
    """This process's children: the local pool's workers."""
    mine = str(os.getpid())
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1] == mine:
                out.append(int(d))
        except OSError:
            continue
    return out


@dataclass
class Run:
    wall: float
    """Seconds from the call to the last result."""
    first: float
    """Seconds to the first results: connection, worker start, model load, and the
    first file (the pool) or the first shard (Ray: its files come back together)."""
    done: dict[Path, Embedded]
    peaks: list[float]
    """Each worker's peak RSS in MB, largest first."""


def timed(files: list[Path], card: Path, workers: int = 1, ray: str | None = None,
          pids: Callable[[], list[int]] = children) -> Run:
    """One run of the files the way embed_together runs them (longest first, one model
    per worker): in-process, over the fork pool, or on the Ray cluster at ``ray``."""
    tasks = _longest_first((p, JobSettings(card)) for p in files)
    with PeakRss(pids) as rss, ExitStack() as stack:
        t0 = time.perf_counter()
        if ray is not None:
            results = raybatch.ordered_map(ray, _embed_one, tasks, load_worker_model, (card, 1))
        elif workers > 1:
            pool = stack.enter_context(worker_pool(workers, card))
            results = pool.imap(_embed_one, tasks)
        else:
            load_worker_model(card, 1)
            results = map(_embed_one, tasks)
        done, stamps = {}, []
        for e in results:
            stamps.append(time.perf_counter() - t0)
            done[e.path] = e
        wall = time.perf_counter() - t0
    assert all(e.embedding is not None for e in done.values())
    return Run(wall, stamps[0], done, sorted(rss.peak.values(), reverse=True))


def nothing(item: object) -> None:
    """A shard's work that costs nothing: what is left is Ray's."""


def ray_overhead(address: str, n: int, shard: int) -> tuple[float, float]:
    """Ray's own cost, on shards of a function that does nothing: (seconds from the call
    to the first result: connection and worker start; seconds per item after it)."""
    t0 = time.perf_counter()
    stamps = [time.perf_counter() for _ in raybatch.ordered_map(
        address, nothing, list(range(n)), time.sleep, (0,), shard=shard)]
    return stamps[0] - t0, (stamps[-1] - stamps[0]) / max(1, n - shard)


def same(a: dict[Path, Embedded], b: dict[Path, Embedded]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[p].vector, b[p].vector) for p in a)


def best(runs: list[Run]) -> Run:
    """The fastest of repeated runs: on a shared machine, the one least slowed by others."""
    return min(runs, key=lambda r: r.wall)


def line(label: str, run: Run, reference: dict[Path, Embedded]) -> str:
    return (f"{label:22s} {len(run.done) / run.wall:6.1f}/s {run.wall:6.2f} s  first after "
            f"{run.first:5.2f} s  workers' peak RSS "
            f"{', '.join(f'{m:.0f}' for m in run.peaks) or '-'} MB  "
            f"same: {same(run.done, reference)}")


def on_cluster(nodes: int, cpus: int, files: list[Path], card: Path,
               reference: dict[Path, Embedded], repeat: int) -> None:
    """The local pool and the cluster in turn, ``repeat`` times, while the cluster is up."""
    with RayCluster(nodes=nodes, cpus_per_node=cpus) as c:
        base = {p: rss_mb(p) for p in c.processes()}

        def workers() -> list[int]:
            return [p for p in c.processes("ray::") if p not in base]

        pool, ray = [], []
        for _ in range(repeat):
            pool.append(timed(files, card, workers=nodes * cpus))
            ray.append(timed(files, card, ray=c.address, pids=workers))
        n = len(files)
        shard = raybatch.shard_size(n, nodes * cpus)
        start, per_item = ray_overhead(c.address, 10 * n, shard)
        print(f"\n{nodes} node(s) x {cpus} CPU(s): the cluster's own processes "
              f"{sum(base.values()):.0f} MB over {len(base)}")
        print(line(f"local, {nodes * cpus} workers", best(pool), reference))
        print(line(f"Ray, {nodes} node(s)", best(ray), reference))
        print(f"Ray's own cost: connect + first worker up {start:.2f} s, then "
              f"{1000 * per_item:.2f} ms per file (shards of {shard}); wall against the "
              f"pool {1000 * (best(ray).wall - best(pool).wall) / n:+.1f} ms per file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best counts")
    parser.add_argument("--model", default="campplus-int8")
    args = parser.parse_args()
    if not (SPEECH / "test_list.csv").exists():
        print(f"no {SPEECH}: nothing to measure", file=sys.stderr)
        return 1
    utts, _ = read_utterances(SPEECH / "test_list.csv")
    files = [u.path for u in utts[: args.files]]
    card = resolve_card(args.model)
    print(f"{len(files)} files of {SPEECH / 'test_list.csv'}, {args.model}, no cache, "
          f"{os.cpu_count()} cores, best of {args.repeat}; wall time includes worker start "
          "and model loads")
    runs = [timed(files, card, workers=1) for _ in range(args.repeat)]
    reference = runs[0].done
    print(line("local, in-process", best(runs), reference))
    on_cluster(1, 2, files, card, reference, args.repeat)
    on_cluster(2, 1, files, card, reference, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
