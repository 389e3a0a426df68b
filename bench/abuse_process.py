"""Measurements of the daemon process: blocking, SIGTERM, memory, live
enrollments, a second daemon (issue 8, sections 1-3)."""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import soundfile as sf
import zmq
from abuse_common import (
    MAX_BYTES,
    NO_SPEECH,
    Row,
    exit_text,
    long_pcm,
    ms,
    proc_status,
    running,
    short,
    speech_clips,
    timed,
)
from benchkit import DaemonProcess

from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll


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
            enroll(d.conn, "long", [too_long], None, False, MAX_BYTES)
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


