"""The hub's listening surfaces attacked, measured (issue 25).

    .venv/bin/python bench/abuse_hub.py [--quick] [--only NAME]

A real ``vggvox-client hub`` in a subprocess on loopback TCP, CURVE on both sides,
fed by a stand-in daemon (a CURVE PUB socket sending real encoded events at a
steady rate): ``hubrig.py``. Measurements:

 hubflood    2,000 raw TCP connections to the subscribers' port, held (no handshake):
             does a known subscriber still get events; the hub's files and memory;
             how long until the hub has closed them
 hubcap      --max-subscribers 2 and a third known subscriber: held, then let in
 hubsize     a 64 KiB subscription, a 17 MiB control request, a 64 KiB event from a
             daemon (limit 16 KiB): what each does to the hub and to others
 hubkeys     an unknown key on both ports, a byte stream that is not ZMTP

The latency the hub adds: bench_hub.py.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import msgpack
import zmq
from abuse_common import Row, hold_tcp, main_alone, proc_status
from hubrig import FILES, Feeder, heard, running_hub, turn_event

from vggvox.protocol.events import encode
from vggvox_client.connection import curve_options


def m_hubflood(tmp: Path, quick: bool) -> list[Row]:
    count = 500 if quick else 2000
    with running_hub(tmp) as hub:
        feeder = Feeder(hub)
        conn = hub.conn()
        sub = conn.subscribe(["turn"])
        base = heard(conn, sub, 2.0)
        files0, rss0 = hub.files(), proc_status(hub.proc.pid, "VmRSS")
        host, port = hub.events[6:].rsplit(":", 1)
        t0 = time.monotonic()
        held = hold_tcp(host, int(port), count)
        during = heard(conn, sub, 2.0)
        files1, rss1 = hub.files(), proc_status(hub.proc.pid, "VmRSS")
        closed_at = None
        while time.monotonic() - t0 < 15 and closed_at is None:
            if hub.files() <= files0 + 5:
                closed_at = time.monotonic() - t0
            time.sleep(0.2)
        late = hub.conn("sub2").subscribe(["turn"])
        newcomer = heard(hub.conn("sub2"), late, 3.0)
        for s in held:
            s.close()
        late.close(0)
        sub.close(0)
        feeder.close()
        alive = hub.proc.poll() is None
    return [("25.hub.flood", f"{len(held)} raw TCP connections held on the subscribers' port "
             f"(no handshake) under a limit of {FILES} files, 100 events/s flowing",
             "(new surface)",
             f"a subscriber heard {base} events in 2 s before, {during} during; hub files "
             f"{files0} -> {files1}, RSS {rss0:.0f} -> {rss1:.0f} MB; the hub had closed them "
             f"{f'after {closed_at:.1f} s' if closed_at else 'not within 15 s'} (handshake "
             f"limit 5 s); a new subscriber then heard {newcomer} in 3 s; hub "
             f"{'alive' if alive else 'DEAD'}")]


def m_hubcap(tmp: Path, quick: bool) -> list[Row]:
    with running_hub(tmp, ["--max-subscribers", "2"]) as hub:
        feeder = Feeder(hub)
        conns = [hub.conn(w) for w in ("sub", "sub2", "sub3")]
        socks = [c.subscribe(["turn"]) for c in conns]  # three at once
        got = [0, 0, 0]
        deadline = time.monotonic() + 8.0  # past one handshake limit (5 s): held again?
        while time.monotonic() < deadline:
            for i, (c, s) in enumerate(zip(conns, socks, strict=True)):
                got[i] += c.receive_event(s, 0.01) is not None
        held = conns[0].request("status")["held"]
        waiting = got.index(min(got))
        socks[(waiting + 1) % 3].close(0)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and not heard(conns[waiting], socks[waiting], 0.2):
            pass
        waited = time.monotonic() - t0
        for i, s in enumerate(socks):
            if i != (waiting + 1) % 3:
                s.close(0)
        feeder.close()
    return [("25.hub.cap", "--max-subscribers 2, three known subscribers at once, "
             "100 events/s", "(new surface)",
             f"events heard in 8 s by each: {got} ({held} handshakes held); after one "
             f"left, the waiting one heard events {waited:.1f} s later (its retry comes "
             "after the 5 s handshake limit)")]


def m_hubsize(tmp: Path, quick: bool) -> list[Row]:
    with running_hub(tmp, ["--max-message-bytes", "16384"]) as hub:
        feeder = Feeder(hub)
        conn = hub.conn()
        good = conn.subscribe(["turn"])
        heard(conn, good, 1.0)
        big_sub = hub.conn("sub2").subscribe(["turn"])
        big_sub.setsockopt(zmq.SUBSCRIBE, b"x" * 65536)
        sub_effect = heard(conn, good, 1.0)
        req: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        for opt, v in curve_options(hub.keys / "hub.key", hub.keys / "sub.key_secret").items():
            req.setsockopt(opt, v)
        req.connect(hub.control)
        req.send(msgpack.packb({"op": "enroll", "name": "x", "audio": [b"\0" * (17 << 20)]}))
        control_answered = req.poll(3000) != 0
        req.close(0)
        status_ok = conn.request("status")["ok"]
        hub.feed.send_multipart(encode(turn_event(0, "x" * 65536), 0))
        t0 = time.monotonic()
        while (time.monotonic() - t0 < 10
               and not conn.request("status")["daemons"][0]["connected"]):
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and not heard(conn, good, 0.1):
            pass
        back = time.monotonic() - t0
        after = heard(conn, good, 1.0)
        feeder.close()
        big_sub.close(0)
        good.close(0)
        alive = hub.proc.poll() is None
    return [("25.hub.sizes", "a 64 KiB subscription; a 17 MiB control request; a 64 KiB "
             "event from a daemon (--max-message-bytes 16384)", "(new surface)",
             f"others heard {sub_effect} events in 1 s after the subscription; the 17 MiB "
             f"request {'was answered' if control_answered else 'got no answer (link dropped)'}"
             f", status still {'answers' if status_ok else 'FAILS'}; after the big event "
             f"the daemon's link was back and events flowing within {back:.1f} s "
             f"({after} in the next 1 s); hub {'alive' if alive else 'DEAD'}")]


def m_hubkeys(tmp: Path, quick: bool) -> list[Row]:
    with running_hub(tmp) as hub:
        feeder = Feeder(hub)
        stranger = hub.conn("stranger", timeout=2)
        sock = stranger.subscribe(["turn"])
        got = heard(stranger, sock, 2.0)
        try:
            stranger.request("status")
            control = "answered"
        except Exception as e:
            control = type(e).__name__
        host, port = hub.events[6:].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100)
            raw.settimeout(5)
            t0 = time.monotonic()
            try:
                while raw.recv(4096):
                    pass
                closed = f"closed after {time.monotonic() - t0:.2f} s"
            except ConnectionResetError:
                closed = f"reset after {time.monotonic() - t0:.2f} s"
            except OSError as e:
                closed = f"not closed within 5 s ({e})"
        sock.close(0)
        friend = hub.conn()
        fsock = friend.subscribe(["turn"])
        still = heard(friend, fsock, 1.0)
        fsock.close(0)
        feeder.close()
    return [("25.hub.keys", "an unknown CURVE key on both ports; HTTP bytes on the "
             "subscribers' port", "(new surface)",
             f"unknown key: {got} events in 2 s, status {control}; the HTTP connection was "
             f"{closed}; a known subscriber then heard {still} events in 1 s")]


MEASUREMENTS = {"hubflood": m_hubflood, "hubcap": m_hubcap, "hubsize": m_hubsize,
                "hubkeys": m_hubkeys}


def main() -> int:
    return main_alone(MEASUREMENTS, __doc__ or "", "500 connections, not 2,000")


if __name__ == "__main__":
    sys.exit(main())
