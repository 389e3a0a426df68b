"""Satellites: latency against a local source, loss on a healthy link, a cut link.

    .venv/bin/python bench/bench_satellite.py [--plays 2] [--cut-s 10]

One real daemon with CURVE keys, a private PulseAudio null sink, and two paths
for the same sound: the daemon's own microphone source (``local``, PortAudio on
the sink's monitor) and a satellite (``vggvox-client satellite --device pulse``
on the same monitor, streaming over loopback TCP with CURVE). The conversation
is played into the sink ``--plays`` times; both hear it at the same moment.

- latency: each satellite ``speaker`` event is matched with the local one of the
  same window (the nearest in publish time, within 0.25 s: windows are 0.5 s
  apart). Local latency is the local event's publish time minus the moment its
  window's last sample entered the ring (``captured``); the satellite's is its own
  event's publish time minus that same moment (the sound was captured at once by
  both), so the difference is what the link adds (target: within 30 ms);
- a healthy link loses nothing: the satellite's gaps, dropped samples and
  windows (target 0), and its windows beside the local source's;
- a cut: a second satellite (a file played in a loop, ``--buffer-s 5``) through a
  loopback proxy that closes its connections and refuses new ones for
  ``--cut-s`` seconds; the loss both ends count, and the time from the link's
  return to the next turn event (target: within 2 s).

Figures are as measured on this machine, under whatever else runs on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit
import yaml
from tcpproxy import TcpProxy

from vggvox.protocol.keys import keygen
from vggvox_client.connection import Connection
from vggvox_client.enroll import enroll
from vggvox_client.virtualmic import PulseServer


def start(tmp: Path, pulse: PulseServer) -> tuple[Any, Path, str]:
    """The daemon: its microphone on the sink's monitor, satellites on loopback, CURVE."""
    keys = tmp / "keys"
    keygen(keys, "vggvoxd")
    keygen(keys / "admins", "bench")
    for name in ("kitchen", "hall"):
        keygen(keys / "satellites", name)
    listen = f"tcp://127.0.0.1:{benchkit.free_port()}"
    (tmp / "vggvoxd.yaml").write_text(yaml.safe_dump({
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "satellites": str(keys / "satellites")},
        "satellites": {"listen": listen}, "sources": [{"name": "local", "device": "pulse"}],
        "status": {"interval_s": 0.5}}))
    events = f"tcp://127.0.0.1:{benchkit.free_port()}"
    control = f"tcp://127.0.0.1:{benchkit.free_port()}"
    d = benchkit.DaemonProcess(tmp, source=None, env=pulse.env, args=[
        "--config", str(tmp / "vggvoxd.yaml"), "--events", events, "--control", control])
    d.conn = Connection(control, events, 10, keys / "vggvoxd.key",
                        keys / "admins/bench.key_secret")
    return d.start(), keys, listen


def satellite(keys: Path, server: str, name: str, *args: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(benchkit.CLIENT), "--log-level", "INFO", "satellite", "--server", server,
         "--name", name, "--server-key", str(keys / "vggvoxd.key"),
         "--key", str(keys / f"satellites/{name}.key_secret"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def wait_running(d: Any, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.conn.request("status")["sources"].get(name, {}).get("state") == "running":
            return
        time.sleep(0.1)
    raise SystemExit(f"{name} never ran: {d.output()}")


def collect(sub: Any, seconds: float) -> list[dict]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev = Connection.receive(sub, 0.2)
        if ev is not None:
            out.append(ev)
    return out


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def latency(d: Any, keys: Path, listen: str, pulse: PulseServer, wav: Path,
            plays: int) -> None:
    sat = satellite(keys, listen, "kitchen", "--device", "pulse", env={**os.environ,
                                                                        **pulse.env})
    try:
        wait_running(d, "local")
        wait_running(d, "kitchen")
        sub = d.conn.subscribe(["speaker"])
        got: list[dict] = []
        for _ in range(plays):
            pulse.play(wav).wait(timeout=120)
            got += collect(sub, 1.5)
        sub.close()
        link = d.conn.request("status")["sources"]["kitchen"]
    finally:
        sat.terminate()
        sat.communicate(timeout=10)
    local = [e for e in got if e["source"] == "local"]
    remote = [e for e in got if e["source"] == "kitchen"]
    pairs = []
    for e in remote:
        near = min(local, key=lambda m: abs(m["time"] - e["time"]), default=None)
        if near is not None and abs(near["time"] - e["time"]) < 0.25:
            pairs.append((near["time"] - near["captured"], e["time"] - near["captured"]))
    if not pairs:
        raise SystemExit(f"no matched windows: {len(local)} local, {len(remote)} satellite")
    here, there = [p[0] * 1000 for p in pairs], [p[1] * 1000 for p in pairs]
    added = [b - a for a, b in zip(here, there, strict=True)]
    print(f"windows: local {len(local)}, satellite {len(remote)}, matched {len(pairs)}")
    print(f"latency, window captured -> speaker event published (ms): local p50 "
          f"{statistics.median(here):.0f} p95 {pct(here, 0.95):.0f}; satellite p50 "
          f"{statistics.median(there):.0f} p95 {pct(there, 0.95):.0f}; the link adds p50 "
          f"{statistics.median(added):.0f} p95 {pct(added, 0.95):.0f} (target <= 30)")
    sat_link = link["satellite"]
    print(f"healthy link: {sat_link['lost_samples']} samples lost (gaps), "
          f"{link['dropped_samples']} dropped in the ring, {link['dropped_windows']} windows "
          f"dropped (target 0 each)")


def cut(d: Any, keys: Path, listen: str, wav: Path, cut_s: float) -> None:
    proxy = TcpProxy(int(listen.rsplit(":", 1)[1]))
    sat = satellite(keys, proxy.endpoint, "hall", "--device", f"file-loop:{wav}")
    try:
        wait_running(d, "hall")
        sub = d.conn.subscribe(["turn"])
        time.sleep(4.0)
        proxy.cut()
        time.sleep(cut_s)
        while Connection.receive(sub, 0.05) is not None:
            pass  # what was published before the return
        proxy.restore()
        back, wall = time.monotonic(), time.time()
        first = None
        while time.monotonic() - back < 15 and first is None:
            ev = Connection.receive(sub, 0.05)
            if ev is not None and ev["source"] == "hall" and ev["time"] > wall:
                first = time.monotonic() - back
        sub.close()
        link: dict[str, Any] = {}
        while time.monotonic() - back < 20 and not link.get("cuts"):
            time.sleep(0.2)
            link = d.conn.request("status")["sources"]["hall"]["satellite"]
    finally:
        sat.terminate()
        out = sat.communicate(timeout=10)[0].decode(errors="replace")
        proxy.close()
    lines = [line for line in out.splitlines() if "link" in line]
    print(f"{cut_s:g} s cut (buffer 5 s): the daemon counted {link['lost_s']:.2f} s lost, "
          f"the satellite {link['reported_lost'] / 16000:.2f} s; cuts {link['cuts']}")
    print("first turn event after the link's return: "
          + (f"{first:.2f} s (target <= 2)" if first is not None else "none within 15 s"))
    print("satellite log:\n  " + "\n  ".join(lines[-3:]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plays", type=int, default=2, help="times the conversation is played")
    ap.add_argument("--cut-s", type=float, default=10.0, help="how long the link is cut")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        convo = benchkit.conversation(tmp)
        pulse = PulseServer(tmp / "pulse")
        pulse.start()
        d = None
        try:
            d, keys, listen = start(tmp, pulse)
            for name, files in convo.enroll.items():
                enroll(d.conn, name, files, None, False, 16 << 20)
            latency(d, keys, listen, pulse, convo.stream, args.plays)
            cut(d, keys, listen, convo.stream, args.cut_s)
        finally:
            if d is not None:
                d.stop()
            pulse.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
