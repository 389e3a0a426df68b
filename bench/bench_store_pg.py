"""The voiceprint store at scale, PostgreSQL beside SQLite (issue 25, section 2):

    .venv/bin/python bench/bench_store_pg.py [--speakers 100000] [--batch 10000]

For each backend, in the same run, on the same synthetic voiceprints (random unit
vectors of the shipped model's size, one embedding per speaker, bound to its card):

- **fill**: ``--speakers`` speakers with ``enroll_many``, ``--batch`` a transaction.
  Each batch's time is printed: with checks that re-scanned the table per new
  speaker it grew with the store; now it should stay flat.
- **linearity, and 10k in one transaction**: then ``enroll_many`` of 1,000 new
  speakers, and of 10,000, each one transaction into the full store (committed).
  Each costs a part that grows with the store (every name and its look-alike
  skeletons read once per transaction) plus one per new speaker: a + b*N. Checks
  that re-scanned the table per new speaker cost N*M: 10x the speakers took 10x
  the full scans.
- **load**: one full ``voiceprints()`` of the store (what a daemon reads at start and
  after every change), and ``speakers()``.

A private PostgreSQL 15 (tests/pgserver.py; run as root, the server runs as the
postgres user, fsync off as in the tests). Figures are wall times on this machine,
with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchkit import PostgresServer

from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox.storeapi import Store
from vggvox.storebinding import ModelId
from vggvox.storeopen import open_store
from vggvox.storerows import NewPrints


def prints(model: ModelId, first: int, n: int, prefix: str = "spk") -> list[NewPrints]:
    """``n`` speakers, each one random unit vector (seeded by ``first``)."""
    dim = model.dim or 192
    v = np.random.default_rng(first).standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [NewPrints(f"{prefix}{first + i:07d}", v[i:i + 1], ["bench"], [3.0])
            for i in range(n)]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fill(store: Store, model: ModelId, speakers: int, batch: int) -> list[float]:
    times = []
    for first in range(0, speakers, batch):
        chunk = prints(model, first, min(batch, speakers - first))
        times.append(timed(lambda c=chunk: store.enroll_many(c, model)))  # type: ignore[misc]
        print(f"    {first + len(chunk):>7,} speakers: batch of {len(chunk):,} in "
              f"{times[-1]:.2f} s", flush=True)
    return times


def grow(store: Store, model: ModelId, n: int) -> float:
    """One ``enroll_many`` of ``n`` new speakers (one transaction, committed)."""
    batch = prints(model, 10_000_000 + n, n, prefix="new")
    return timed(lambda: store.enroll_many(batch, model))


def run_backend(label: str, where: str | Path, model: ModelId, speakers: int,
                batch: int) -> dict[str, float]:
    print(f"\n== {label}: {where}", flush=True)
    store = open_store(where)
    times = fill(store, model, speakers, batch)
    out = {"first batch s": times[0], "last batch s": times[-1], "fill s": sum(times)}
    out["enroll_many 1k s"] = grow(store, model, 1_000)
    out["enroll_many 10k s"] = grow(store, model, 10_000)
    names: list[str] = []

    def load() -> None:
        names[:] = store.voiceprints(model)[0]

    out["voiceprints() s"] = timed(load)
    assert len(names) == speakers + 11_000, len(names)
    out["speakers() s"] = timed(store.speakers)
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speakers", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    card = load_card(resolve_card(DEFAULT_MODEL))
    model = ModelId.of(card)
    print(f"{args.speakers:,} speakers of {card.tag} ({model.dim} values each), "
          f"enroll_many {args.batch:,} a transaction")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vggvox-bench-") as tmp:
        results["SQLite"] = run_backend("SQLite", Path(tmp) / "voiceprints.db", model,
                                        args.speakers, args.batch)
    with PostgresServer() as pg:
        results["PostgreSQL"] = run_backend("PostgreSQL 15", pg.url, model, args.speakers,
                                            args.batch)
    print(f"\n{'':40}" + "".join(f"{k:>12}" for k in results))
    for key in results["SQLite"]:
        print(f"{key:40}" + "".join(f"{r[key]:12.2f}" for r in results.values()))
    for k, r in results.items():
        a_b = r["enroll_many 10k s"] / r["enroll_many 1k s"]
        per = (r["enroll_many 10k s"] - r["enroll_many 1k s"]) / 9_000 * 1e6
        fixed = r["enroll_many 1k s"] - per * 1_000 / 1e6
        print(f"{k}: enroll_many 10k / 1k = {a_b:.1f}; a + b*N with a = {fixed:.2f} s "
              f"(the store's names, once) and b = {per:.0f} us a speaker")


if __name__ == "__main__":
    main()
