"""Daemons sharing one PostgreSQL store (issue 25, section 2): propagation, removal, an
outage while a stream plays, and every daemon's load and index build at 100,000 speakers.

    .venv/bin/python bench/bench_fleet_store.py [--parts propagation,outage,scale]
        [--enrollments 50] [--outage-s 30] [--speakers 100000]

A private PostgreSQL 15 (tests/pgserver.py, as root: it runs the server as the
postgres user) and real daemons (tests/daemon_proc.py), each on a stdin source kept
open, on ``--store postgresql://...``:

- **propagation**: ``--enrollments`` enrollments on daemon A (one fixture clip each,
  ``force``: the same voice under new names), one at a time. "Named on B" is taken
  as *in B's voiceprints in memory* (B's ``status`` counts them: ``speakers``), polled
  every 5 ms: from then on, B's every decision scores against the new speaker. Timed
  from A's reply (the write committed) and from the request sent (with A's embedding).
  Then each is removed on A: the time until B's memory has one less, the replies'
  ``erasure``, and the rows PostgreSQL still holds of them (psql, after VACUUM).
- **outage**: daemon C plays a file at real-time pace (``--source file:``: a live
  source, whose queue drops windows when the embedder falls behind) of the two-speaker
  conversation repeated; ``--outage-s`` in, PostgreSQL is stopped for ``--outage-s``,
  and an enrollment is tried on A every 5 s meanwhile. Decisions missed: the windows
  C's live queue dropped and the samples its ring buffer lost (both 0 when none), and
  the speaker events of each repetition of the conversation (the same audio: a missed
  decision shows as fewer); each refused enrollment's code and text.
- **scale**: ``--speakers`` synthetic voiceprints put into PostgreSQL with
  ``enroll_many`` (10,000 a transaction), then two daemons start on it: each one's
  first load (``stages.store.load_s``) and search index build (``stages.search.build_s``),
  and ``--enrollments`` more enrollments' propagation at that size (past
  ``INCREMENTAL_ABOVE`` speakers a daemon reads only the speakers its store's change
  log names, and patches them into its voiceprints).

Figures are wall times on this machine, with whatever else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import (
    FIXTURES,
    DaemonProcess,
    PostgresServer,
    conversation,
    score_events,
    write_wav,
)

from vggvox.audio import load_audio
from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox.protocol.pcm import to_pcm
from vggvox.storebinding import ModelId
from vggvox.storeopen import open_store
from vggvox_client.connection import ClientError
from vggvoxd.storefollow import INCREMENTAL_ABOVE

CLIP = "vctk-p225__p225_003.wav"


def start(daemons: list[DaemonProcess]) -> None:
    threads = [threading.Thread(target=d.start, kwargs={"timeout": 300}) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=320)


def speakers(d: DaemonProcess) -> int:
    return int(d.conn.request("status", timeout=10)["speakers"])


def wait_count(d: DaemonProcess, want: int, timeout: float = 30.0) -> float:
    """perf_counter() when ``d``'s memory holds ``want`` voiceprints."""
    deadline = time.monotonic() + timeout
    while speakers(d) != want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{d.tmp.name} never held {want} voiceprints")
        time.sleep(0.005)
    return time.perf_counter()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def show(label: str, xs: list[float]) -> None:
    print(f"  {label:44s} p50 {1000 * statistics.median(xs):7.1f} ms   "
          f"p95 {1000 * pct(xs, 95):7.1f} ms   max {1000 * max(xs):7.1f} ms")


def propagation(pg: Any, a: DaemonProcess, b: DaemonProcess, n: int) -> None:
    clip = to_pcm(load_audio(FIXTURES / CLIP))
    base = speakers(b)
    after_reply, end_to_end, gone = [], [], []
    for i in range(n):
        t0 = time.perf_counter()
        a.conn.request("enroll", timeout=60, name=f"fleet-{i:03d}", audio=[clip], force=True)
        t1 = time.perf_counter()
        t2 = wait_count(b, base + i + 1)
        after_reply.append(max(0.0, t2 - t1))
        end_to_end.append(t2 - t0)
    print(f"propagation: {n} enrollments on A, until in B's voiceprints in memory")
    show("from A's reply (committed)", after_reply)
    show("from the request (with A's embedding)", end_to_end)
    print(f"  p95 <= 1 s: {'yes' if pct(end_to_end, 95) <= 1.0 else 'NO'}")
    erasure: dict[str, int] = {}
    for i in range(n):
        t0 = time.perf_counter()
        reply = a.conn.request("remove", timeout=60, name=f"fleet-{i:03d}")
        erasure[reply["erasure"]] = erasure.get(reply["erasure"], 0) + 1
        gone.append(wait_count(b, base + n - i - 1) - t0)
    pg.psql("VACUUM")
    left = pg.psql("SELECT (SELECT count(*) FROM speakers WHERE name LIKE 'fleet-%') + "
                   "(SELECT count(*) FROM embeddings WHERE speaker LIKE 'fleet-%')")
    print(f"removal: {n} removals on A, until gone from B's memory")
    show("from the request", gone)
    print(f"  replies' erasure: {erasure}; rows left in PostgreSQL after VACUUM: {left}; "
          f"A's list: {len(a.conn.request('list')['speakers'])}, "
          f"B's list: {len(b.conn.request('list')['speakers'])} speakers")


def try_enroll(a: DaemonProcess, stop: threading.Event, out: list[tuple[str, str]]) -> None:
    clip = to_pcm(load_audio(FIXTURES / CLIP))
    while not stop.wait(5.0):
        try:
            a.conn.request("enroll", timeout=60, name="during-outage", audio=[clip],
                           force=True)
            out.append(("ok", "enrolled"))
        except ClientError as e:
            out.append((str(e.code), str(e)))


def sqlite_twin(tmp: Path, enroll: dict[str, list[Path]]) -> Path:
    """A SQLite store with the same speakers (embedded here, as the daemon would)."""
    from vggvox.embedder import Embedder

    embedder = Embedder.from_card(DEFAULT_MODEL)
    path = tmp / "twin.db"
    store = open_store(path)
    for name, files in enroll.items():
        emb = np.stack([embedder.embed(load_audio(f)) for f in files])
        store.enroll(name, emb, ModelId.of(embedder.card), [str(f) for f in files],
                     [1.0] * len(files))
    return path


def collect(daemons: list[DaemonProcess], socks: list[Any], events: list[list[Any]],
            seconds: float | None) -> None:
    """Each daemon's events for ``seconds`` (None: until every one has exited)."""
    t0 = time.monotonic()
    while seconds is None or time.monotonic() - t0 < seconds:
        alive = [d.proc is not None and d.proc.poll() is None for d in daemons]
        if seconds is None and not any(alive):
            return
        for i, (d, sock) in enumerate(zip(daemons, socks, strict=True)):
            while (ev := d.conn.receive(sock, 0.02)) is not None:
                events[i].append(ev)


def outage(pg: Any, a: DaemonProcess, tmp: Path, down_s: float) -> None:
    convo = conversation(tmp)
    x = load_audio(convo.stream)
    rep_s = len(x) / 16000
    reps = int(np.ceil((3 * down_s) / rep_s)) + 1
    long = write_wav(tmp / "long.wav", np.concatenate([x] * reps))
    twin = sqlite_twin(tmp, convo.enroll)
    for name in ("c", "d"):
        (tmp / name).mkdir()
    # C on PostgreSQL, which goes down; D, its twin on a SQLite file, plays the same.
    c = DaemonProcess(tmp / "c", source=f"file:{long}", args=["--store", pg.url])
    d = DaemonProcess(tmp / "d", source=f"file:{long}", args=["--store", str(twin)])
    both, events = [c, d], [[], []]  # type: ignore[var-annotated]
    stop, tries = threading.Event(), []  # type: ignore[var-annotated]
    try:
        start(both)
        socks = [x.conn.subscribe(["speaker", "status"]) for x in both]
        collect(both, socks, events, down_s)
        pg.stop("fast")
        down_at = c.conn.request("status", timeout=10)["stream_s"]
        trier = threading.Thread(target=try_enroll, args=(a, stop, tries))
        trier.start()
        collect(both, socks, events, down_s)
        stop.set()
        trier.join(timeout=70)
        during = c.conn.request("status", timeout=10)
        pg.start()
        collect(both, socks, events, None)
    finally:
        stop.set()
        for x in both:
            x.stop()
    report_outage(c, during, events, convo.turns, (down_at, during["stream_s"]), rep_s, reps)
    codes = [code for code, _ in tries]
    print(f"  enrollments tried on A meanwhile: {len(tries)}, codes {set(codes)}; one line "
          f"each: {all(chr(10) not in text for _, text in tries)}")
    if tries:
        print(f"    e.g. {tries[0][1]}")


def report_outage(c: DaemonProcess, during: dict[str, Any], events: list[list[Any]],
                  turns: list[tuple[float, float, str]], down: tuple[float, float],
                  rep_s: float, reps: int) -> None:
    log = c.log.read_text(errors="replace")
    print(f"outage: PostgreSQL down {down[1] - down[0]:.0f} s (stream {down[0]:.1f}-"
          f"{down[1]:.1f} s) while C played {reps} x {rep_s:.1f} s at real time, and D, "
          f"on a SQLite twin, the same")
    print(f"  C during the outage: store stage {during['stages']['store']['state']}, "
          f"dropped windows {during['dropped_windows']}")
    windows = []
    for label, got in zip(("C (PostgreSQL, down)", "D (SQLite, up)"), events, strict=True):
        evs = [e for e in got if e["type"] == "speaker"]
        final = [e for e in got if e["type"] == "status"][-1]
        windows.append(len(evs))
        per_rep = []
        for k in range(reps):
            mine = [e for e in evs if k * rep_s <= e["t_start"] < (k + 1) * rep_s]
            good, total = score_events(mine, turns, offset=k * rep_s)
            per_rep.append(f"{len(mine)} ({good}/{total} right)")
        print(f"  {label}: windows decided {len(evs)}, dropped windows "
              f"{final['dropped_windows']}, dropped samples {final['dropped_samples']}; per "
              f"repetition: {', '.join(per_rep)}")
    print(f"  decisions missed by C against D: {windows[1] - windows[0]}")
    print(f"  C's log: {log.count('refused until it is back')} outage line(s), "
          f"{log.count('resynchronised')} resync line(s)")


def fill(url: str, n: int) -> float:
    """``n`` synthetic voiceprints, as bench_store_pg.py fills its store."""
    from bench_store_pg import fill as fill_store

    card = load_card(resolve_card(DEFAULT_MODEL))
    store = open_store(url)
    t0 = time.perf_counter()
    fill_store(store, ModelId.of(card), n, 10_000)
    store.close()
    return time.perf_counter() - t0


def scale(pg: Any, tmp: Path, n: int, enrollments: int) -> None:
    took = fill(pg.url, n)
    print(f"scale: {n} synthetic voiceprints put into PostgreSQL in {took:.1f} s "
          f"(bench_store_pg.fill: enroll_many, 10,000 a transaction)")
    ds = []
    for name in ("s1", "s2"):
        (tmp / name).mkdir()
        ds.append(DaemonProcess(tmp / name, args=["--store", pg.url]))
    t0 = time.perf_counter()
    try:
        start(ds)
        started = time.perf_counter() - t0
        for d in ds:
            deadline = time.monotonic() + 600
            while ((search := d.conn.request("status", timeout=10)["stages"]["search"]
                    )["mode"] != "index" and search["voiceprints"] >= search["index_above"]
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            store = d.conn.request("status", timeout=10)["stages"]["store"]
            print(f"  daemon {d.tmp.name}: load {store['load_s']} s, index build "
                  f"{search['build_s']} s ({search['voiceprints']} voiceprints, "
                  f"mode {search['mode']})")
        print(f"  both answering {started:.1f} s after starting them together")
        clip = to_pcm(load_audio(FIXTURES / CLIP))
        took, after_reply = [], []
        for i in range(enrollments):
            t1 = time.perf_counter()
            ds[0].conn.request("enroll", timeout=120, name=f"more-{i}", audio=[clip],
                               force=True)
            t2 = time.perf_counter()
            t3 = wait_count(ds[1], n + i + 1, timeout=120)
            took.append(t3 - t1)
            after_reply.append(max(0.0, t3 - t2))
        print(f"  {enrollments} more enrollments at {n} on {ds[0].tmp.name}, until in "
              f"{ds[1].tmp.name}'s voiceprints in memory")
        show("from A's reply (committed)", after_reply)
        show("from the request (with A's embedding)", took)
        print(f"  p95 <= 1 s: {'yes' if pct(took, 95) <= 1.0 else 'NO'}")
        last = ds[1].conn.request("status")["stages"]["store"]["load_s"]
        print(f"  its last load (the change log's speakers past {INCREMENTAL_ABOVE}): "
              f"{last} s")
    finally:
        for d in ds:
            d.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="propagation,outage,scale")
    p.add_argument("--enrollments", type=int, default=50)
    p.add_argument("--outage-s", type=float, default=30.0)
    p.add_argument("--speakers", type=int, default=100_000)
    args = p.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        tmp = Path(folder)
        with PostgresServer() as pg:
            if parts & {"propagation", "outage"}:
                ds = []
                for name in ("a", "b"):
                    (tmp / name).mkdir()
                    ds.append(DaemonProcess(tmp / name, args=["--store", pg.url]))
                try:
                    start(ds)
                    convo = conversation(tmp)
                    for speaker, files in convo.enroll.items():  # for the outage's turns
                        ds[0].conn.request("enroll", timeout=60, name=speaker, audio=[
                            to_pcm(load_audio(f)) for f in files])
                    if "propagation" in parts:
                        propagation(pg, ds[0], ds[1], args.enrollments)
                    if "outage" in parts:
                        outage(pg, ds[0], tmp, args.outage_s)
                finally:
                    for d in ds:
                        d.stop()
        if "scale" in parts:
            with PostgresServer() as pg:
                scale(pg, tmp, args.speakers, args.enrollments)


if __name__ == "__main__":
    main()
