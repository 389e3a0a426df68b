"""The daemon's satellites socket (``satellites.listen``) attacked, measured (issue 25).

    .venv/bin/python bench/abuse_satellites.py [--quick] [--only NAME]

Each measurement starts a real vggvoxd (CURVE keys, ``satellites.listen`` on loopback
TCP, ``satellites.max`` 3, under ``prlimit --nofile=1024:1024``) with two honest
sources that keep talking while it is attacked: ``stdin:live`` and a satellite
``kitchen``, both fed a two-speaker conversation at real-time pace. Each row says
what the attack did and whether the daemon stayed healthy: the honest sources'
``speaker`` events (windows decided) and their latency, ``status``'s answer time, RSS.

 satconn   1,000 raw TCP connections held; six valid satellite keys at once (max 3);
           unknown and admin keys (200 handshakes)
 satbad    oversize frames, garbage msgpack and wrong types after a valid handshake; a
           handshake never finished; names taken (a source's, another key's)
 satfast   a satellite sending audio as fast as it can for 30 s (10 with --quick);
           one whose positions jump backwards and forwards wildly
 satchurn  satellites joining with new names, one after another (200; 50 with
           --quick): the rooms in memory, RSS, threads; one key under several names
"""

from __future__ import annotations

import random
import socket
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import zmq
from abuse_common import NO_SPEECH, Row, hold_tcp, main_alone, open_fds, short, threads
from satrig import CONVO, KEYS, MAX, Rig, Sat, after, new_surface, rig, sat_status
from zmq.utils.monitor import recv_monitor_message

from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.satellite import DOWNSTREAM, Bye, Hello, Pcm, decode
from vggvoxd.curveauth import REFUSED_BURST, REFUSED_LOG_S

# -- satconn ------------------------------------------------------------------------------


def flood(r: Rig, count: int) -> Row:
    mark, fds0 = r.mark(), open_fds(r.pid)
    host, port = r.listen[6:].rsplit(":", 1)
    held = hold_tcp(host, int(port), count)
    time.sleep(0.5)
    fds1 = open_fds(r.pid)
    st, _ = r.status()
    conns = (st or {}).get("connections", {}).get("satellites", {})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 12 and open_fds(r.pid) > fds0 + 10:
        time.sleep(0.2)
    closed = time.monotonic() - t0
    for s in held:
        s.close()
    time.sleep(2.0)  # kitchen's DEALER redials after a shed
    kitchen = sat_status(r, "kitchen").get("state", "gone")
    return new_surface(
        "25.sat.flood", f"{count:,} raw TCP connections opened and held on satellites.listen "
        "(no handshake), the daemon under a limit of 1,024 files; honest sources streaming",
        f"{len(held)} connected (the first refused one, while the daemon shed, ends it); daemon "
        f"files {fds0} -> {fds1}; connections.satellites then {conns}; "
        f"{r.log_count('reached the cap')} cap WARNING(s); files back to within 10 of the "
        f"start {closed + 0.5:.1f} s after the flood began; kitchen then {kitchen}; "
        + r.health(mark))


def beyond_max(r: Rig) -> Row:
    mark = r.mark()
    names = KEYS[1:]
    sats = [Sat(r, k) for k in names]
    answers = [s.join(k) for s, k in zip(sats, names, strict=True)]
    kinds = Counter(a.kind if a else "no answer" for a in answers)
    why = next((a.error for a in answers if a and a.kind == "refused"), "")
    for s, a in zip(sats, answers, strict=True):
        if a is not None and a.kind == "welcome":
            s.send(Bye(), 1.0)
    waiting = next(i for i, a in enumerate(answers) if a is None or a.kind != "welcome")
    t0, joined = time.monotonic(), None
    while joined is None and time.monotonic() - t0 < 10:
        a = sats[waiting].join(names[waiting], timeout=1.0)
        if a is not None and a.kind == "welcome":
            joined = time.monotonic() - t0
        else:
            time.sleep(0.2)
    sats[waiting].send(Bye(), 1.0)
    time.sleep(0.3)
    for s in sats:
        s.close()
    return new_surface(
        "25.sat.max", f"{len(sats)} satellites with valid keys at once, satellites.max {MAX} "
        "(kitchen holds one slot)",
        f"answers {dict(kinds)} (\"{why}\"); once the joined said bye a refused one joined "
        f"{after(joined)}; "
        + r.health(mark))


def strangers(r: Rig, count: int) -> Row:
    mark, lines0 = r.mark(), r.log_count("unknown key")
    sats = [Sat(r, "mallory" if i % 2 else "alice") for i in range(count)]
    for s in sats:
        s.send(Hello(1, "intruder", s.session, 0, 0), 0.0)
    t0 = time.monotonic()
    answered = 0
    while time.monotonic() - t0 < 3.0:
        answered += sum(s.sock.poll(0) != 0 for s in sats)
        time.sleep(0.1)
    for s in sats:
        s.close()
    lines = r.log_count("unknown key") - lines0
    last = next((line for line in reversed(r.d.log.read_text(errors="replace").splitlines())
                 if "unknown key" in line), "")
    gone = "intruder" not in (r.status()[0] or {}).get("sources", {})
    return new_surface(
        "25.sat.keys", f"{count} satellites with unknown (half) and admin (half) keys saying "
        "hello, connected 3 s",
        f"{answered} answers, intruder {'not in status' if gone else 'IN STATUS'}; "
        f"{lines} 'refused ... unknown key' WARNING lines for {count} handshakes (the first "
        f"{REFUSED_BURST} name their key, then one line per {REFUSED_LOG_S:.0f} s counts the "
        f"rest); " + (f"the last: \"{short(last, 150)}\"; " if last else "")
        + r.health(mark))


def m_satconn(tmp: Path, quick: bool) -> list[Row]:
    if not CONVO.exists():
        return [new_surface("25.sat.conn", "connections and keys", NO_SPEECH)]
    with rig(tmp) as r:
        return [flood(r, 500 if quick else 1000), beyond_max(r),
                strangers(r, 50 if quick else 200)]


# -- satbad -------------------------------------------------------------------------------


def dropped(sat: Sat, send: bytes, timeout: float = 1.0) -> str:
    """Send one frame; what the link did (ZeroMQ's events on the satellite's side)."""
    mon = sat.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    t0 = time.monotonic()
    sat.send(send)
    seen: list[str] = []
    reply = None
    while time.monotonic() - t0 < timeout and len(seen) < 2 and reply is None:
        if mon.poll(50):
            event = recv_monitor_message(mon)["event"]
            seen.append(f"{'dropped' if event == zmq.EVENT_DISCONNECTED else 'redialled'} "
                        f"at {time.monotonic() - t0:.2f} s")
        if reply is None and sat.sock.poll(0):
            msg = decode(sat.sock.recv(), DOWNSTREAM)
            reply = msg if msg.kind == "refused" else None
    sat.sock.disable_monitor()
    mon.close(0)
    said = f"refused: \"{reply.error}\"" if reply else "no refusal"
    return f"{said}; link {', '.join(seen) or 'kept'}"


def oversize(r: Rig) -> Row:
    mark = r.mark()
    sat = Sat(r, "s1")
    sat.join("s1")
    over = Pcm(0, b"\0" * 2 * 16001, 0).encode()
    out = [f"{len(over):,} B pcm of 16,001 samples: {dropped(sat, over)}"]
    for size in (40_000, 1 << 20):
        out.append(f"{size:,} B: {dropped(sat, bytes(size))}")
    sat.send(Pcm(0, b"\0" * 3200, 0))
    time.sleep(1.0)
    s1 = sat_status(r, "s1")
    state = f"{s1.get('state', 'GONE')}, stream_s {s1.get('stream_s')}"
    sat.send(Bye(), 1.0)
    sat.close()
    return new_surface(
        "25.sat.size", "after a valid handshake: a pcm frame of 1 s + 1 sample (under the "
        "size cap), 40 kB and 1 MiB frames (over ZeroMQ's MAXMSGSIZE 32,512)",
        "; ".join(out) + f"; then its next frame was taken: s1 {state}; " + r.health(mark))


def garbage_frames() -> list[bytes]:
    rng = random.Random(25)
    frames = [rng.randbytes(rng.randrange(1, 2000)) for _ in range(400)]
    wrong: list[Any] = [7, "pcm", [1, 2], None, 1.5, {"t": 7}, {"t": "nope"}, {"t": "pcm"},
                        {"t": "pcm", "pos": "x", "audio": b"", "lost": 0},
                        {"t": "pcm", "pos": 0, "audio": 5, "lost": 0},
                        {"t": "pcm", "pos": 0, "audio": b"\0", "lost": 0},
                        {"t": "pcm", "pos": 0, "audio": b"", "lost": -1},
                        {"t": "pcm", "pos": 2 ** 63, "audio": b"", "lost": 0},
                        {"t": "pcm", "pos": 0.5, "audio": b"", "lost": 0},
                        {"t": "ping", "lost": True}, {"t": "hello", "v": 2},
                        {"t": "welcome", "source": "x", "next": 0},
                        {str(i): i for i in range(9)}, {1: 2}]
    frames += [msgpack.packb(w) for w in wrong]
    frames.append(b"\x81\xa1t" * 10_000)  # maps nested 10,000 deep
    frames.append(b"\x91" * 30_000)  # arrays nested 30,000 deep
    frames.append(msgpack.packb({"t": "pcm", "pos": 2 ** 64 - 1, "audio": b"", "lost": 0}))
    return frames


def garbage(r: Rig) -> Row:
    mark, tb0, err0 = r.mark(), r.log_count("Traceback"), r.log_count(" ERROR ")
    sat = Sat(r, "s2")
    sat.join("s2")
    frames = garbage_frames()
    for f in frames:
        sat.send(f)
    refused: Counter[str] = Counter()
    while (msg := sat.recv(2.0)) is not None:
        refused[msg.error.split(":")[0][:40] if msg.kind == "refused" else msg.kind] += 1
    sat.send(Pcm(0, to_pcm(r.audio[:16000]), 0))
    time.sleep(1.0)
    state = sat_status(r, "s2").get("state", "gone")
    sat.send(Bye(), 1.0)
    sat.close()
    top = ", ".join(f"{n} \"{k}\"" for k, n in refused.most_common(4))
    return new_surface(
        "25.sat.garbage", f"after a valid handshake: {len(frames)} frames of random bytes, "
        "msgpack that is not a map, wrong types, negative/huge/float positions, 9 keys, "
        "maps and arrays nested 10,000-30,000 deep",
        f"{sum(refused.values())} refusals ({top}, ...); tracebacks in the log "
        f"{r.log_count('Traceback') - tb0}, ERROR lines {r.log_count(' ERROR ') - err0}; "
        f"its next valid frame was taken: s2 {state}; " + r.health(mark))


def slow(r: Rig, count: int) -> Row:
    mark = r.mark()
    host, port = r.listen[6:].rsplit(":", 1)
    peers = []
    for i in range(count):
        s = socket.create_connection((host, int(port)), timeout=15)
        if i % 2:  # the first bytes of a ZMTP 3 greeting, then nothing
            s.sendall(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f\x03")
        peers.append(s)
    t0, closed = time.monotonic(), []
    for s in peers:
        try:
            while s.recv(4096):
                pass
            closed.append(time.monotonic() - t0)
        except OSError:
            closed.append(time.monotonic() - t0)
        s.close()
    return new_surface(
        "25.sat.slow", f"{count} TCP peers that never finish the handshake (half silent, half "
        "stopping inside the ZMTP greeting)",
        f"closed by the daemon after {min(closed):.1f}-{max(closed):.1f} s (HANDSHAKE_IVL "
        "5 s); " + r.health(mark))


def names(r: Rig) -> Row:
    mark = r.mark()
    out = []
    for key, name in (("s3", "stdin"), ("s4", "kitchen"), ("s5", "../etc"), ("s6", "x" * 65)):
        sat = Sat(r, key)
        a = sat.join(name)
        out.append(f"{name[:8]!r}: " + (f"{a.kind} \"{short(a.error, 70)}\" (retry {a.retry})"
                                         if a is not None and a.kind == "refused"
                                         else (a.kind if a else "no answer")))
        sat.close()
    time.sleep(2.0)
    kitchen = sat_status(r, "kitchen").get("state", "GONE")
    return new_surface(
        "25.sat.name", "names taken: the daemon's own source (stdin), another key's "
        "satellite (kitchen); bad names", "; ".join(out) + f"; kitchen still {kitchen}; "
        + r.health(mark))


def m_satbad(tmp: Path, quick: bool) -> list[Row]:
    if not CONVO.exists():
        return [new_surface("25.sat.bad", "bad frames", NO_SPEECH)]
    with rig(tmp) as r:
        return [oversize(r), garbage(r), slow(r, 10 if quick else 40), names(r)]


# -- satfast ------------------------------------------------------------------------------


def fast(r: Rig, secs: float) -> Row:
    mark, cpu0 = r.mark(), r.d.cpu_s()
    sat = Sat(r, "s1")
    sat.join("s1")
    pcm, pos, rss_max = to_pcm(r.audio), 0, 0.0
    t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < secs:
        off = (2 * pos) % (len(pcm) - 32000)
        if sat.send(Pcm(pos, pcm[off:off + 32000], 0), 0.5):
            pos += 16000
        while sat.sock.poll(0):
            sat.sock.recv()
        if int(10 * now) % 5 == 0:
            rss_max = max(rss_max, r.rss())
    wall = time.monotonic() - t0
    time.sleep(1.0)
    s1 = sat_status(r, "s1")
    link = s1.get("satellite", {})
    cpu = r.d.cpu_s() - cpu0
    sat.send(Bye(), 1.0)
    sat.close()
    return new_surface(
        "25.sat.fast", f"a satellite sending 1 s frames of speech as fast as it can for "
        f"{secs:.0f} s", f"it sent {pos / 16000:,.0f} s of audio in {wall:.0f} s "
        f"({pos / 16000 / wall:.0f}x real time); the daemon took {s1.get('stream_s', 0):,.0f} s "
        f"of it into its stream, skipped {link.get('throttled', 0) / 16000:,.0f} s for its pace "
        f"(satellite.throttled), dropped {s1.get('dropped_samples', 0) / 16000:,.0f} s "
        f"(dropped_samples), {s1.get('dropped_windows', 0)} windows; it decided "
        f"{r.heard['s1']} of its windows; daemon CPU {cpu / wall:.0%} of one core; RSS peak "
        f"{rss_max:.0f} MB; " + r.health(mark))


def jumps(r: Rig, count: int) -> Row:
    mark, warn0 = r.mark(), r.log_count("of audio missing")
    sat = Sat(r, "s2")
    sat.join("s2")
    rng, frame = random.Random(7), to_pcm(r.audio[:320])
    t0, pos = time.monotonic(), 0
    for _ in range(count // 2):  # forward, 1 to 64 s at a time
        pos += 320 + rng.randrange(16000, 1 << 20)
        sat.send(Pcm(pos, frame, 0))
    time.sleep(1.0)
    forward = sat_status(r, "s2").get("stream_s", 0)
    for i in range(count // 2):  # back and forth
        sat.send(Pcm(rng.randrange(1 << 40) if i % 2 else rng.randrange(1 << 20), frame, 0))
    sent = time.monotonic() - t0
    time.sleep(1.0)
    s2 = sat_status(r, "s2")
    link = s2.get("satellite", {})
    stream0 = s2.get("stream_s", 0)
    for i in range(50):  # its real clock, far below where the jumps left it
        sat.send(Pcm(16000 + 320 * i, frame, 0))
    time.sleep(1.0)
    stuck = sat_status(r, "s2").get("stream_s", 0) - stream0
    warns = r.log_count("of audio missing") - warn0
    sat.send(Bye(), 1.0)
    sat.close()
    return new_surface(
        "25.sat.jumps", f"a satellite sending {count} frames of 20 ms whose positions jump: "
        "half forward 1-64 s each, then half back and forth at random between 0 and 2^40",
        f"sent in {sent:.1f} s; its stream took {forward:.1f} s after the forward jumps "
        f"(0.5 s of silence stands in for each gap, within its pace), {stream0:.1f} s in all; "
        f"state {s2.get('state')}, lost_samples {link.get('lost_samples', 0):,} "
        f"({link.get('lost_s', 0) / 86400:,.0f} days); {warns} 'audio missing' WARNING "
        f"lines; then 1 s at its real clock added {stuck:.2f} s to its stream (behind the "
        "clock's furthest point: skipped as repeats until it says hello with a new "
        "session); " + r.health(mark))


def m_satfast(tmp: Path, quick: bool) -> list[Row]:
    if not CONVO.exists():
        return [new_surface("25.sat.fast", "fast audio", NO_SPEECH)]
    with rig(tmp) as r:
        return [fast(r, 10.0 if quick else 30.0), jumps(r, 500 if quick else 2000)]


# -- satchurn -----------------------------------------------------------------------------


def rooms(r: Rig) -> int:
    return len(r.d.conn.request("calibration")["sources"])


def churn(r: Rig, count: int) -> Row:
    mark, rooms0, thr0, fds0 = r.mark(), rooms(r), threads(r.pid), open_fds(r.pid)
    frame, took, rss_half = to_pcm(r.audio[:3200]), [], 0.0
    for i in range(count):
        if i == count // 2:
            rss_half = r.rss()
        sat = Sat(r, KEYS[1 + i % (len(KEYS) - 1)])
        t0 = time.monotonic()
        a = sat.join(f"room-{i:04d}")
        took.append(time.monotonic() - t0 if a is not None and a.kind == "welcome" else 99.0)
        sat.send(Pcm(0, frame, 0))
        sat.send(Bye())
        time.sleep(0.05)
        sat.close()
    time.sleep(1.0)
    left = sorted((r.status()[0] or {}).get("sources", {}))
    rooms1, thr1, fds1 = rooms(r), threads(r.pid), open_fds(r.pid)
    rss1 = r.rss()
    return new_surface(
        "25.sat.churn", f"{count} satellites joining one after another, each under a new "
        "name (6 keys), 0.2 s of audio, bye", f"joins took p50 "
        f"{1000 * statistics.median(took):.0f} ms, max {1000 * max(took):.0f} ms "
        f"({sum(t == 99.0 for t in took)} not welcomed); rooms in memory (`calibration`) "
        f"{rooms0} -> {rooms1} (a satellite's room is saved and dropped when it leaves; RSS "
        f"{mark[2]:.0f} -> {rss_half:.0f} -> {rss1:.0f} MB: the second half's "
        f"{1024 * (rss1 - rss_half) / (count - count // 2):.0f} kB a name); threads {thr0} -> "
        f"{thr1}, files {fds0} -> {fds1}; sources in status after: {left}; " + r.health(mark))


def hog(r: Rig) -> Row:
    mark = r.mark()
    hogs = [Sat(r, "s1") for _ in range(MAX - 1)]
    answers = [s.join(f"hog-{i}") for i, s in enumerate(hogs)]
    for s in hogs:
        s.close()  # gone without a bye: a name holds its slot until forget_s
    said = "; ".join(f"hog-{i}: " + (a.kind if a is None or a.kind != "refused"
                                     else f"refused \"{short(a.error, 90)}\" (retry {a.retry})")
                     if a is not None else f"hog-{i}: no answer"
                     for i, a in enumerate(answers))
    other = Sat(r, "s2")
    t0, refused, joined = time.monotonic(), 0, None
    while joined is None and time.monotonic() - t0 < 10:
        a = other.join("other", timeout=1.0)
        if a is not None and a.kind == "welcome":
            joined = time.monotonic() - t0
        else:
            refused += 1
            time.sleep(0.25)
    other.send(Bye(), 1.0)
    other.close()
    return new_surface(
        "25.sat.hog", f"one key joining under {MAX - 1} names and vanishing (no bye), "
        f"satellites.max {MAX} (kitchen holds one slot), forget_s 3 s",
        f"{said}; another key then refused {refused} times, joined {after(joined)}; "
        + r.health(mark))


def m_satchurn(tmp: Path, quick: bool) -> list[Row]:
    if not CONVO.exists():
        return [new_surface("25.sat.churn", "churn", NO_SPEECH)]
    with rig(tmp) as r:
        return [churn(r, 50 if quick else 200), hog(r)]


MEASUREMENTS = {"satconn": m_satconn, "satbad": m_satbad, "satfast": m_satfast,
                "satchurn": m_satchurn}

if __name__ == "__main__":
    sys.exit(main_alone(MEASUREMENTS, __doc__ or "", "fewer connections and joins, 10 s not 30"))
