"""Issue 8's attacks and faults against a real vggvoxd, measured: figure before, figure now.

    .venv/bin/python bench/bench_abuse.py [--quick] [--only NAME]

Each measurement starts its own daemon in a subprocess (``tests/daemon_proc.py``,
ipc:// endpoints in a temp folder; the access one uses tcp://127.0.0.1) and
attacks it as issue 8 did, reusing the approach of the tests that check the same
thing (tests/test_daemon.py, tests/test_access.py, tests/test_store.py), but it
measures instead of asserting. It prints a Markdown table: item, attack or fault,
figure before (from issue 8), figure now. Measurements (``--only`` takes the name
or the number):

 1 blocking  status/list latency while a 110 s enrollment is embedding
 2 sigterm   SIGTERM while one long clip is inside ONNX, N runs (9; 3 with --quick)
 3 flood     3,000 raw AF_UNIX connections to the control socket, held, then closed,
             under a soft limit of 1,024 open files, then under a hard one too
 4 memory    twelve 16 MiB requests of 15.7 million empty maps, and a 121 s enrollment
 5 live      300 `enroll live=20` requests on a stdin source, then the source ends
 6 second    a second daemon on the same endpoints
 7 privacy   the store's modes under umask 022
 8 erasure   a removed speaker's vectors in the store's files, with and without a reader
 9 access    CURVE keys: a reader, an admin, an unknown key, no key; tcp://0.0.0.0
10 replay    does status show a replay's session token

Needs the repository and ../shared/data (the fixtures' LibriSpeech clips); what
needs speech is skipped, saying so, when they are absent.
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import soundfile as sf
import yaml
import zmq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' daemon runner and store reader
from daemon_proc import DaemonProcess  # noqa: E402
from store_reader import Reader  # noqa: E402

from conftest import FIXTURES  # noqa: E402
from vggvox.audio import load_audio  # noqa: E402
from vggvox_client import live  # noqa: E402
from vggvox_client.connection import ClientError, Connection  # noqa: E402

MAX_BYTES = 16 * 1024 * 1024
Row = tuple[str, str, str, str]
"""(item, attack or fault, figure before, figure now)"""


# ------------------------------------------------------------------------------ helpers


def speech_clips(speaker: str = "ls-3005") -> list[Path]:
    """Real enrollment clips of one speaker from the shared fixtures ([] when absent)."""
    return sorted(FIXTURES.glob(f"{speaker}__*.wav")) if FIXTURES.is_dir() else []


NO_SPEECH = f"skipped: no speech clips in {FIXTURES} (a fresh clone has no ../shared)"


def long_pcm(seconds: float = 110.0) -> bytes:
    """One clip of ``seconds`` of real speech (a fixture clip repeated), as request PCM."""
    voice = load_audio(speech_clips()[0])
    return live.to_pcm(np.tile(voice, int(seconds * 16000 / len(voice))))


def proc_status(pid: int, key: str) -> float:
    """A /proc/PID/status figure in MB (VmRSS, VmHWM); nan when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def timed(conn: Connection, op: str, timeout: float = 10.0, **fields: Any
          ) -> tuple[dict[str, Any] | None, float, str]:
    """(reply or None, seconds, error text) of one request."""
    t0 = time.perf_counter()
    try:
        reply = conn.request(op, timeout=timeout, **fields)
        return reply, time.perf_counter() - t0, ""
    except ClientError as e:
        return None, time.perf_counter() - t0, str(e)


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


@contextmanager
def running(tmp: Path, **kw: Any) -> Iterator[DaemonProcess]:
    tmp.mkdir(parents=True, exist_ok=True)
    d = DaemonProcess(tmp, **kw).start(timeout=60)
    try:
        yield d
    finally:
        d.stop()


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


# ------------------------------------------------------------------------- measurements


def m_blocking(tmp: Path, quick: bool) -> list[Row]:
    """1: status and list, alternately every 20 ms, while a 110 s enrollment embeds."""
    attack = "`status`/`list` every 20 ms during a 110 s-audio `enroll` (one clip)"
    before = "7.2 s of blocking (a 519 s enrollment)"
    if not speech_clips():
        return [("1", attack, before, NO_SPEECH)]
    payload = msgpack.packb({"op": "enroll", "name": "long", "audio": [long_pcm(110.0)]})
    with running(tmp) as d:
        # The enrollment goes from a DEALER in this thread, packed beforehand, so that
        # nothing in this process competes with the requests being timed.
        enroller: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        enroller.setsockopt(zmq.LINGER, 0)
        enroller.connect(d.conn.control)
        reply: dict[str, Any] = {}
        waits: list[float] = []
        at: list[float] = []
        failures = 0
        try:
            enroller.send_multipart([b"", payload])
            t0 = time.monotonic()
            while len(waits) < 5000 and time.monotonic() - t0 < 150:
                if enroller.poll(0):
                    reply = msgpack.unpackb(enroller.recv_multipart()[-1], raw=False)
                    break
                at.append(time.monotonic() - t0)
                r, took, _ = timed(d.conn, "status" if len(waits) % 2 else "list", timeout=10)
                waits.append(took)
                failures += r is None
                time.sleep(0.02)
            else:
                reply = {"error": "no reply within 150 s"}
            took_enroll = time.monotonic() - t0
        finally:
            enroller.close()
    if not waits:
        return [("1", attack, before, "the enrollment ended before any request was made")]
    slow = [f"{ms(w)} at {a:.1f} s" for w, a in zip(waits, at, strict=True) if w >= 0.1]
    outcome = (f"enrolled {reply['speech_s']:.0f} s of speech" if reply.get("ok")
               else f"enrollment failed: {short(reply.get('error', 'no reply'), 60)}")
    now = (f"max {ms(max(waits))}, median {ms(statistics.median(waits))} over {len(waits)} "
           f"requests ({failures} unanswered) during the {took_enroll:.1f} s enrollment "
           f"({outcome}); over 100 ms: " + (", ".join(slow) if slow else "none"))
    return [("1", attack, before, now)]


def m_sigterm(tmp: Path, quick: bool) -> list[Row]:
    """2: SIGTERM while one 110 s clip is inside ONNX; exit codes and exit times."""
    runs = 3 if quick else 9
    attack = f"SIGTERM 1.0-2.4 s into a 110 s one-clip enrollment (inside ONNX), {runs} runs"
    before = "SIGABRT in 2 of 9 runs (\"terminate called without an active exception\")"
    if not speech_clips():
        return [("2", attack, before, NO_SPEECH)]
    clip = long_pcm(110.0)
    codes: list[int | None] = []
    times: list[float] = []
    aborts = intact = 0
    for run, delay in enumerate(np.linspace(1.0, 2.4, runs)):
        (tmp / f"run{run}").mkdir(parents=True)
        d = DaemonProcess(tmp / f"run{run}")
        d.start(timeout=60)

        def enroll_long(d: DaemonProcess = d) -> None:
            try:
                d.conn.request("enroll", timeout=5, name="long", audio=[clip])
            except ClientError:
                pass  # the daemon stops before it answers

        t = threading.Thread(target=enroll_long)
        t.start()
        time.sleep(float(delay))
        code, took = d.stop(timeout=10)
        t.join(timeout=10)
        codes.append(code)
        times.append(took)
        aborts += "terminate called" in d.output()
        with sqlite3.connect(d.store) as db:
            intact += db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    zeros = sum(c == 0 for c in codes)
    others = sorted({exit_text(c) for c in codes if c != 0})
    now = (f"exit 0 in {zeros} of {runs}" + (f" (others: {', '.join(others)})" if others else "")
           + f"; slowest exit {max(times):.2f} s (median {statistics.median(times):.2f} s); "
           f"\"terminate called\" in {aborts} logs; store intact in {intact} of {runs}")
    return [("2", attack, before, now)]


def m_flood(tmp: Path, quick: bool) -> list[Row]:
    """3: 3,000 raw AF_UNIX connections opened and held, then closed, against a daemon
    started with a soft limit of 1,024 open files (as the issue's); then once more with
    the hard limit at 1,024 too, which the daemon cannot raise (README: a known limit)."""
    return [flood(tmp / "soft", "-Sn", 30), flood(tmp / "hard", "-n", 10 if quick else 20)]


def status_within(d: DaemonProcess, seconds: float = 10.0) -> tuple[float | None, int]:
    """Ask for status until it answers (a shedding daemon is unbound for a while):
    (seconds until the answer or None, failed attempts)."""
    t0, failed = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        left = seconds - (time.monotonic() - t0)
        if timed(d.conn, "status", timeout=max(0.1, min(left, 5.0)))[0] is not None:
            return time.monotonic() - t0, failed
        failed += 1
        if d.proc is not None and d.proc.poll() is not None:
            return None, failed
        time.sleep(0.1)
    return None, failed


def answer_text(got: tuple[float | None, int]) -> str:
    took, failed = got
    if took is None:
        return "NO ANSWER within 10 s"
    return ms(took) + (f" ({failed} refused attempts first)" if failed else "")


def flood(tmp: Path, ulimit: str, seconds: float) -> Row:
    want = 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want + 200:  # this process holds them all
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        want = min(want, soft - 200)
    attack = (f"{want:,} raw AF_UNIX connections to the control socket, held, then closed "
              f"(daemon started under `ulimit {ulimit} 1024`"
              + (": soft and hard limit, which it cannot raise)" if ulimit == "-n" else ")"))
    before = "~1,100 connections killed it (SIGABRT, libzmq \"Too many open files\") in < 1 s"
    tmp.mkdir(parents=True)
    d = DaemonProcess(tmp)
    d.argv = ["bash", "-c", f'ulimit {ulimit} 1024 && exec "$0" "$@"', *d.argv]
    d.start(timeout=60)
    assert d.proc is not None
    pid = d.proc.pid  # bash exec'd the daemon: the same process
    path = d.conn.control[len("ipc://"):]
    held: list[socket.socket] = []
    peak_fds, during, refused, backlog = open_fds(pid), [], 0, 0
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
        nofile = next(line.split()[3] for line in limits.splitlines()
                      if line.startswith("Max open files"))
        t0 = time.monotonic()
        # Connect until `want` are held; a refusal (the daemon unbound to shed a flood)
        # is counted and retried. Bounded: `seconds`, or 100,000 failed attempts.
        while (len(held) < want and time.monotonic() - t0 < seconds
               and refused + backlog < 100_000 and d.proc.poll() is None):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:  # the listen backlog is full: let the daemon accept
                s.close()
                backlog += 1
                time.sleep(0.01)
                continue
            except OSError:  # refused, or no socket file: unbound for now, or dead
                s.close()
                refused += 1
                time.sleep(0.01)
                continue
            held.append(s)
            if len(held) % 1000 == 0 and len(held) < want:
                during.append(status_within(d))
                peak_fds = max(peak_fds, open_fds(pid))
            elif len(held) % 100 == 0:
                peak_fds = max(peak_fds, open_fds(pid))
        opened_s = time.monotonic() - t0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # let it accept the last ones
            peak_fds = max(peak_fds, open_fds(pid))
            time.sleep(0.1)
        during.append(status_within(d))
        alive_held = d.proc.poll() is None
        for s in held:
            s.close()
        n_held = len(held)
        held.clear()
        time.sleep(0.5)
        after = status_within(d)
        alive_after = d.proc.poll() is None
        fds_after = open_fds(pid)
    finally:
        for s in held:
            s.close()
        code, _ = d.stop()
    answered = [x for x in during if x[0] is not None]
    slowest = max(answered, key=lambda x: x[0] or 0.0) if answered else (None, 0)
    now = (f"{n_held:,} connected in {opened_s:.1f} s ({refused:,} refused, {backlog:,} "
           "backlog-full retries)"
           + f"; daemon {'alive' if alive_held else 'DEAD (' + exit_text(d.proc.returncode) + ')'}"
           f" while held, {'alive' if alive_after else 'DEAD'} after; status answered "
           f"{len(answered)} of {len(during)} times while held (slowest {answer_text(slowest)})"
           f", after closing: {answer_text(after)}"
           f"; its open fds at peak {peak_fds:,} (soft limit raised from 1024 to {nofile}), "
           f"after {fds_after}; stopped with {exit_text(code)}")
    log = d.output().splitlines()
    warned = [line for line in log if "WARNING" in line or "ERROR" in line or "Too many" in line]
    shed = [line for line in warned if "cap" in line]
    for line in (warned[:1] + shed[:1]) if warned[:1] != shed[:1] else shed[:1]:
        now += f"; its log: \"{short(line, 110)}\""
    return ("3", attack, before, now)


def m_memory(tmp: Path, quick: bool) -> list[Row]:
    """4: twelve 16 MiB requests of 15.7 million empty maps, back to back without waiting,
    then an enrollment of 121 s (over enroll.max_audio_s): replies and peak RSS."""
    attack = ("twelve 16 MiB requests of 15.7 M nested empty maps sent back to back, then a "
              "121 s enrollment")
    before = "1.2 GB RSS for one 15 MiB request; 1.8 GB with 40 queued"
    inner = b"\xdc\x04\x00" + b"\x80" * 1024
    middle = b"\xdc\x00\x0f" + inner * 15
    bomb = b"\xdc\x04\x00" + middle * 1024  # 1024 × 15 × 1024 = 15.7 M maps, < 16 MiB
    assert len(bomb) < MAX_BYTES
    with running(tmp) as d:
        assert d.proc is not None
        pid = d.proc.pid
        start_hwm = proc_status(pid, "VmHWM")
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 10000)
        sock.connect(d.conn.control)
        replies: list[dict[str, Any]] = []
        sent = 0
        t0 = time.monotonic()
        try:
            for _ in range(12):  # no waiting for replies: ZeroMQ queues what it may
                try:
                    sock.send_multipart([b"", bomb])
                    sent += 1
                except zmq.Again:
                    break
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            deadline = time.monotonic() + 60
            while len(replies) < sent and time.monotonic() < deadline:
                if poller.poll(500):
                    replies.append(msgpack.unpackb(sock.recv_multipart()[-1], raw=False))
        finally:
            sock.close()
        took = time.monotonic() - t0
        bomb_hwm = proc_status(pid, "VmHWM")
        noise = np.random.default_rng(0).normal(0, 0.1, 121 * 16000).astype(np.float32)
        too_long = tmp / "long.wav"
        sf.write(str(too_long), noise, 16000)
        try:
            live.enroll(d.conn, "long", [too_long], None, False, MAX_BYTES)
            long_reply = "ACCEPTED"
        except ClientError as e:
            long_reply = "refused: " + short(str(e).split(": ", 1)[-1], 70)
        alive = timed(d.conn, "status")[0] is not None
        peak = proc_status(pid, "VmHWM")
    refused = sum(not r.get("ok") for r in replies)
    errors = sorted({short(str(r.get("error", "")), 60) for r in replies if not r.get("ok")})
    now = (f"{len(replies)} of {sent} sent got replies in {took:.1f} s, {refused} refused "
           f"({'; '.join(errors) or '-'}); 121 s enrollment {long_reply}; peak RSS (VmHWM) "
           f"{peak:.0f} MB ({start_hwm:.0f} MB before, {bomb_hwm:.0f} MB after the maps); "
           f"status {'answers' if alive else 'NO ANSWER'}")
    return [("4", attack, before, now)]


def m_live(tmp: Path, quick: bool) -> list[Row]:
    """5: 300 `enroll live=20` requests from 300 clients on a stdin-source daemon."""
    n = 300
    attack = f"{n} `enroll live=20` requests at once (stdin source), then the source ends"
    before = "300 pending added 272 MB; a pending one was never answered"
    with running(tmp, source="stdin") as d:
        assert d.proc is not None and d.proc.stdin is not None
        pid = d.proc.pid
        d.proc.stdin.write(b"\0" * 32000)  # 1 s of silence: the source is running
        d.proc.stdin.flush()
        deadline = time.monotonic() + 10
        while d.conn.request("status")["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        rss0 = proc_status(pid, "VmRSS")
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        socks: list[zmq.Socket[bytes]] = []
        replies: dict[int, dict[str, Any]] = {}
        try:
            for i in range(n):
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(d.conn.control)
                s.send_multipart([b"", msgpack.packb({"op": "enroll", "name": f"live{i}",
                                                      "live": 20.0})])
                socks.append(s)
            poller = zmq.Poller()
            for s in socks:
                poller.register(s, zmq.POLLIN)

            def collect(seconds: float, until: int) -> None:
                end = time.monotonic() + seconds
                while len(replies) < until and time.monotonic() < end:
                    for s, _ in poller.poll(200):
                        i = socks.index(s)
                        replies[i] = msgpack.unpackb(s.recv_multipart()[-1], raw=False)
                        poller.unregister(s)

            collect(10, n - 1)  # all but the one that records
            time.sleep(0.5)
            rss1 = proc_status(pid, "VmRSS")
            busy = sum("busy" in str(r.get("error", "")) for r in replies.values())
            other = sorted({short(str(r.get("error", r)), 50) for r in replies.values()
                            if "busy" not in str(r.get("error", ""))})
            pending = n - len(replies)
            waiting = [i for i in range(n) if i not in replies]
            t_end = time.monotonic()
            d.proc.stdin.close()  # the source ends before the recording is complete
            collect(15, n)
            answered = [replies[i] for i in waiting if i in replies]
            answer_s = time.monotonic() - t_end
        finally:
            for s in socks:
                s.close()
    if answered:
        pend = (f"the pending one answered {answer_s:.1f} s after the source ended: "
                f"\"{short(str(answered[0].get('error', answered[0])), 70)}\"")
    else:
        pend = "the pending one got NO answer within 15 s of the source ending"
    now = (f"{busy} refused as busy" + (f", other replies: {'; '.join(other)}" if other else "")
           + f", {pending} pending; RSS {rss1 - rss0:+.1f} MB ({rss0:.0f} → {rss1:.0f}); {pend}")
    return [("5", attack, before, now)]


def m_second(tmp: Path, quick: bool) -> list[Row]:
    """6: a second daemon on the first one's endpoints."""
    attack = "a second vggvoxd started on the same ipc endpoints"
    before = "it silently took over the ipc sockets; the first could no longer be reached"
    with running(tmp) as first:
        assert first.proc is not None
        t0 = time.monotonic()
        second = subprocess.run(first.argv, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        took = time.monotonic() - t0
        said = (second.stderr + second.stdout).strip().splitlines()
        names = f"pid {first.proc.pid}" in second.stderr + second.stdout
        r, t_after, err = timed(first.conn, "status", timeout=10)
    msg = short(said[-1] if said else "(nothing)", 100)
    now = (f"second: {exit_text(second.returncode)} after {took:.1f} s, message "
           f"{'names' if names else 'does NOT name'} the first's PID (\"{msg}\"); first "
           + (f"still answers status ({ms(t_after)})" if r else f"NO ANSWER ({short(err, 40)})"))
    return [("6", attack, before, now)]


def m_privacy(tmp: Path, quick: bool) -> list[Row]:
    """7: the modes of the store's folder and files, the daemon started under umask 022."""
    attack = "daemon started under umask 022 with a new store folder; modes after an enroll"
    before = "folder 0755, store/-wal/-shm 0644"
    store = tmp / "state" / "voiceprints.db"
    tmp.mkdir(parents=True)
    old = os.umask(0o022)
    try:
        d = DaemonProcess(tmp)
        d.store = store
        d.argv[d.argv.index("--store") + 1] = str(store)
        d.start(timeout=60)
        try:
            what = "an enroll"
            if speech_clips():
                live.enroll(d.conn, "alice", speech_clips(), None, False, MAX_BYTES)
            else:
                d.conn.request("list")
                what = "a list (no speech to enroll)"
            held = "without a reader"
            names = ["voiceprints.db", "voiceprints.db-wal", "voiceprints.db-shm"]
            if not all((store.parent / f).exists() for f in names[1:]):
                # The daemon's connections are short-lived: hold one so -wal/-shm exist
                # (SQLite gives them the store file's mode, whoever opens it).
                held = "-wal/-shm seen while this process held a connection"
                db = sqlite3.connect(store)
                db.execute("SELECT COUNT(*) FROM speakers").fetchone()
            else:
                db = None
            modes = {f: (f"{os.stat(store.parent / f).st_mode & 0o777:04o}"
                         if (store.parent / f).exists() else "absent") for f in names}
            if db is not None:
                db.close()
            folder = f"{store.parent.stat().st_mode & 0o777:04o}"
        finally:
            d.stop()
    finally:
        os.umask(old)
    now = (f"folder {folder}, store {modes[names[0]]}, -wal {modes[names[1]]}, "
           f"-shm {modes[names[2]]} (after {what}; {held})")
    return [("7", attack, before, now)]


def stored_vectors(store: Path, name: str) -> list[bytes]:
    """The stored vector blobs of ``name`` (read, then the connection closed)."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in db.execute(
            "SELECT vector FROM embeddings WHERE speaker = ?", (name,))]
    finally:
        db.close()


def occurrences(folder: Path, vectors: list[bytes]) -> int:
    """How many times the vectors' bytes occur in all files of ``folder``."""
    blobs = [f.read_bytes() for f in folder.iterdir() if f.is_file()]
    return sum(b.count(v) for b in blobs for v in vectors)


def m_erasure(tmp: Path, quick: bool) -> list[Row]:
    """8: after `remove`, the removed speaker's float32 vectors in the store's folder:
    without a reader; with another process holding a read transaction, at once and
    after the reader ends (+2 s)."""
    attack = ("`remove` a speaker, then count their vector bytes in every file of the "
              "store's folder, without and with a concurrent reader")
    before = "with a reader, the removed vectors stayed in the -wal"
    if not speech_clips() or not speech_clips("ls-3331"):
        return [("8", attack, before, NO_SPEECH)]
    tmp.mkdir(parents=True)
    d = DaemonProcess(tmp)
    store = tmp / "store" / "voiceprints.db"
    d.store = store
    d.argv[d.argv.index("--store") + 1] = str(store)
    d.start(timeout=60)
    try:
        live.enroll(d.conn, "carol", speech_clips("ls-3331"), None, False, MAX_BYTES)
        # Without a reader.
        live.enroll(d.conn, "bob", speech_clips(), None, False, MAX_BYTES)
        secret = stored_vectors(store, "bob")
        seen0 = occurrences(store.parent, secret)
        r = d.conn.request("remove", name="bob")
        alone = occurrences(store.parent, secret)
        alone_reply = r.get("erasure", "(no erasure field)")
        # With another process holding a read transaction.
        live.enroll(d.conn, "bob", speech_clips(), None, False, MAX_BYTES)
        secret = stored_vectors(store, "bob")
        reader = Reader(store)
        try:
            r = d.conn.request("remove", name="bob")
            with_reader = occurrences(store.parent, secret)
            reply = r.get("erasure", "(no erasure field)")
            where = ", ".join(f"{f.name.replace('voiceprints.db', '') or 'store'} "
                              f"{occurrences_file(f, secret)}"
                              for f in sorted(store.parent.iterdir()) if f.is_file())
        finally:
            reader.end()
        t_end = time.monotonic()
        time.sleep(2.0)
        after = occurrences(store.parent, secret)
        zero_at = None
        while time.monotonic() - t_end < 7.0:  # a little longer, to tell "late" from "never"
            if occurrences(store.parent, secret) == 0:
                zero_at = time.monotonic() - t_end
                break
            time.sleep(0.25)
        logged = "pending erasure of 'bob' complete" in d.output()
        speakers = [s["name"] for s in d.conn.request("list")["speakers"]]
    finally:
        d.stop()
    now = (f"{len(secret)} vectors ({seen0} occurrences before); no reader: {alone} left, "
           f"erasure '{alone_reply}'; with a reader: {with_reader} left ({where}), "
           f"erasure '{reply}'; reader ended +2 s: "
           + f"{after} left" + ("" if after == 0 else
                                 f" (0 after {zero_at:.1f} s)" if zero_at is not None else
                                 " (still there 7 s after)")
           + f" (\"complete\" logged: {'yes' if logged else 'no'}); speakers now {speakers}")
    return [("8", attack, before, now)]


def occurrences_file(path: Path, vectors: list[bytes]) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    return sum(data.count(v) for v in vectors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def m_access(tmp: Path, quick: bool) -> list[Row]:
    """9: a CURVE daemon on tcp://127.0.0.1: what a reader, an admin, an unknown key and
    no key get; and tcp://0.0.0.0 without keys."""
    rows: list[Row] = []
    before = "any local user could list, enroll, remove and subscribe (no authentication)"
    tmp.mkdir(parents=True)
    keys = tmp / "keys"
    client = [str(ROOT / ".venv/bin/vggvox-client")]
    if not Path(client[0]).exists():
        client = [sys.executable, "-m", "vggvox_client.cli"]
    for folder, name in ((keys, "vggvoxd"), (keys / "admins", "alice"),
                         (keys / "readers", "ruth"), (keys / "strangers", "mallory")):
        subprocess.run([*client, "keygen", str(folder), name], check=True, timeout=60,
                       capture_output=True)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "readers": str(keys / "readers")},
        "status": {"interval_s": 0.3}}))
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(tmp, args=["--config", str(cfg), "--events", events,
                                 "--control", control])

    def as_(key: Path | None, timeout: float) -> Connection:
        server = keys / "vggvoxd.key" if key else None
        return Connection(control, events, timeout, server, key)

    admin = as_(keys / "admins/alice.key_secret", 60)
    d.conn = admin
    d.start(timeout=60)
    who = {"reader": as_(keys / "readers/ruth.key_secret", 5),
           "admin": admin,
           "unknown key": as_(keys / "strangers/mallory.key_secret", 1.5),
           "no key": as_(None, 1.5)}
    results: dict[str, list[str]] = {}
    try:
        subs = {k: c.subscribe(["status"]) for k, c in who.items()}
        time.sleep(0.3)
        counts = dict.fromkeys(who, 0)
        poller = zmq.Poller()
        for s in subs.values():
            poller.register(s, zmq.POLLIN)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            for s, _ in poller.poll(100):
                s.recv_multipart()
                counts[next(k for k, v in subs.items() if v is s)] += 1
        for s in subs.values():
            s.close()
        victim = bool(speech_clips())
        if victim:
            live.enroll(admin, "victim", speech_clips(), None, False, MAX_BYTES)
        for k in ("unknown key", "no key", "reader", "admin"):  # the admin last: it removes
            conn = who[k]
            r, _, err = timed(conn, "status", timeout=conn.timeout)
            status = "answered" if r else ("no answer" if "no answer" in err else short(err, 50))
            r, _, err = timed(conn, "list", timeout=conn.timeout)
            listed = (f"{len(r['speakers'])} speaker(s)" if r else
                      "no answer" if "no answer" in err else short(err, 50))
            if k == "admin" and not victim:  # nobody to remove: enroll is the proof
                r, _, err = timed(conn, "enroll", timeout=conn.timeout, name="mallory",
                                  audio=[b"\0\0"])
                op = "enroll"
            else:
                r, _, err = timed(conn, "remove", timeout=conn.timeout, name="victim")
                op = "remove victim"
            if r:
                changed = f"{op}: done"
            elif "no answer" in err:
                changed = f"{op}: no answer"
            else:
                changed = f"{op}: \"{short(err.split(': ', 1)[-1], 60)}\""
            results[k] = [f"status {status}", f"list {listed}", changed,
                          f"{counts[k]} events in 2 s"]
        unknown_logged = "refused a client with an unknown key" in d.output()
    finally:
        code, _ = d.stop()
    rows.append(("9", "CURVE daemon on tcp://127.0.0.1 (status every 0.3 s): reader, admin, "
                 "unknown key, no key", before,
                 "; ".join(f"**{k}**: {', '.join(v)}" for k, v in results.items())
                 + f"; unknown key logged: {'yes' if unknown_logged else 'no'}; "
                 f"daemon stopped with {exit_text(code)}"))
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "vggvoxd.main", "--events", f"tcp://0.0.0.0:{free_port()}",
         "--control", f"ipc://{tmp}/c.sock", "--store", str(tmp / "v.db"), "--source", "stdin"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    lines = run.stderr.strip().splitlines()
    rows.append(("9", "`--events tcp://0.0.0.0:PORT` without keys", "bound silently",
                 f"{exit_text(run.returncode)} after {took:.1f} s, {len(lines)} line(s): "
                 f"\"{short(lines[-1] if lines else '(nothing)', 110)}\""))
    return rows


def m_replay(tmp: Path, quick: bool) -> list[Row]:
    """10: a replay session open; does `status` show its token?"""
    attack = "a replay session open (32-character token); `status` from another client"
    before = "`status` listed the session names: anyone could push into or end them"
    token = secrets.token_hex(16)
    with running(tmp) as d:
        d.conn.request("replay", session=token, label="mine", audio=bytes(32000), final=False)
        status = d.conn.request("status")
        shown = token in str(status)
        replays = status.get("replays")
        guess, _, err = timed(d.conn, "replay", session="guessable", audio=b"")
        d.conn.request("replay", session=token, label="mine", audio=b"", final=True)
    now = (f"token in status: {'YES' if shown else 'no'}; `replays` = {replays!r}; "
           f"a 9-character session: "
           + ("ACCEPTED" if guess else f"refused (\"{short(err.split(': ', 1)[-1], 60)}\")"))
    return [("10", attack, before, now)]


MEASUREMENTS: dict[str, Callable[[Path, bool], list[Row]]] = {
    "blocking": m_blocking, "sigterm": m_sigterm, "flood": m_flood, "memory": m_memory,
    "live": m_live, "second": m_second, "privacy": m_privacy, "erasure": m_erasure,
    "access": m_access, "replay": m_replay}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (SIGTERM: 3)")
    names = list(MEASUREMENTS)
    parser.add_argument("--only", metavar="NAME",
                        help=f"run one measurement: {', '.join(names)} (or its number 1-10)")
    args = parser.parse_args()
    chosen = names
    if args.only:
        key = args.only.strip().lower()
        if key.isdigit() and 1 <= int(key) <= len(names):
            key = names[int(key) - 1]
        if key not in MEASUREMENTS:
            parser.error(f"--only: unknown measurement {args.only!r}; one of {', '.join(names)}")
        chosen = [key]
    rows: list[Row] = []
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vggvox-abuse-") as name:
        tmp = Path(name)
        for key in chosen:
            t0 = time.monotonic()
            print(f"[{key}] ...", file=sys.stderr, flush=True)
            try:
                got = MEASUREMENTS[key](tmp / key, args.quick)
            except Exception as e:  # one failed measurement must not hide the others
                item = str(names.index(key) + 1)
                got = [(item, key, "", f"FAILED: {type(e).__name__}: {short(str(e), 200)}")]
            rows += got
            print(f"[{key}] {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    print("| item | attack or fault | figure before (from the issue) | figure now |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |")
    print(f"\n{len(chosen)} measurement(s) in {time.monotonic() - t_all:.0f} s"
          f"{' (--quick)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
