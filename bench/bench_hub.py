"""The latency a hub adds (issue 25), measured.

    .venv/bin/python bench/bench_hub.py [--quick]

One real vggvoxd (CURVE, loopback TCP, a heartbeat every 0.2 s) heard by one
process directly and through a real hub at once: per event, its arrival through
the hub minus its arrival direct. Then a stand-in daemon sending an event every
1 ms through the hub: the end-to-end latency (the event's ``time`` to its arrival).
The hub's abuse measurements: abuse_hub.py.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import yaml
import zmq
from abuse_common import Row, main_alone
from benchkit import DaemonProcess
from hubrig import Feeder, Hub, heard, make_keys, running_hub
from pgserver import free_port

from vggvox_client.connection import Connection


def _latency_daemon(tmp: Path, keys: Path) -> DaemonProcess:
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "node": "bench-a", "status": {"interval_s": 0.2},
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "subs"), "readers": str(keys / "readers")}}))
    events = f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(tmp, args=["--config", str(cfg), "--events", events])
    d.conn = Connection(d.conn.control, events, 10, keys / "vggvoxd.key",
                        keys / "sub.key_secret")
    return d.start(60)


def _pairs(direct: Connection, dsock: zmq.Socket[bytes], via: Connection,
           vsock: zmq.Socket[bytes], seconds: float) -> list[float]:
    """Per (source, seq) heard both ways: arrival through the hub minus arrival direct."""
    at: dict[tuple[str, int], list[float]] = {}
    poller = zmq.Poller()
    poller.register(dsock, zmq.POLLIN)
    poller.register(vsock, zmq.POLLIN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s, _ in poller.poll(100):
            conn = direct if s is dsock else via
            got = conn.receive_event(s, 0)
            if got is not None:
                key = (got.event.source.rsplit("/", 1)[-1], got.seq)
                at.setdefault(key, [0.0, 0.0])[s is vsock] = time.perf_counter()
    return [(b - a) * 1000 for a, b in at.values() if a and b]


def m_latency(tmp: Path, quick: bool) -> list[Row]:
    keys = make_keys(tmp)
    (tmp / "d").mkdir()
    d = _latency_daemon(tmp / "d", keys)
    try:
        with running_hub(tmp, daemons=[d.conn.events]) as hub:
            direct = Connection(d.conn.control, d.conn.events, 5, keys / "vggvoxd.key",
                                keys / "sub.key_secret")
            via = hub.conn("sub2")
            dsock, vsock = direct.subscribe(["status"]), via.subscribe(["status"])
            time.sleep(1.0)
            added = _pairs(direct, dsock, via, vsock, 10.0 if quick else 30.0)
            dsock.close(0)
            vsock.close(0)
            seconds = 3.0 if quick else 10.0
            burst = _burst(hub, seconds)
    finally:
        d.stop()
    q = statistics.quantiles(added, n=20) if len(added) > 20 else [float("nan")] * 19
    b = statistics.quantiles(burst, n=100) if len(burst) > 100 else [float("nan")] * 99
    return [("25.hub.latency", "a daemon's status events heard directly and through the hub "
             "(loopback, CURVE both hops), same process, same run", "(new)",
             f"added by the hub: median {statistics.median(added):.2f} ms, p95 {q[18]:.2f} ms "
             f"over {len(added)} events"),
            ("25.hub.burst", "a stand-in daemon sending an event every 1 ms, end to end "
             "through the hub", "(new)", f"{len(burst) / seconds:.0f} events/s; median "
             f"{statistics.median(burst):.2f} ms, p99 {b[98]:.2f} ms over "
             f"{len(burst)} events")]


def _burst(hub: Hub, seconds: float) -> list[float]:
    conn = hub.conn()
    sock = conn.subscribe(["turn"])
    heard(conn, sock, 0.5)
    feeder = Feeder(hub, period=0.001)
    out: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = conn.receive_event(sock, 0.1)
        if got is not None:
            out.append((time.time() - got.event.time) * 1000)
    feeder.close()
    sock.close(0)
    return out


MEASUREMENTS = {"hublatency": m_latency}


def main() -> int:
    return main_alone(MEASUREMENTS, __doc__ or "", "10 s and 3 s runs, not 30 s and 10 s")


if __name__ == "__main__":
    sys.exit(main())
