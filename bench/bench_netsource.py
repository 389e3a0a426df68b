"""Network audio: latency against a local file source, and reconnection time.

    .venv/bin/python bench/bench_netsource.py [--away 1 5]

One real daemon, two sources playing the same conversation from the same moment:
``local`` (``file:``, played at real-time pace by the daemon itself) and ``web``
(an HTTP server on loopback streaming it live as Ogg/Opus, muxed by PyAV,
``tests/netstreams.py``). The speakers are enrolled first, by an earlier run of the
daemon on the same store, so both sources begin with everyone enrolled.

- latency: for each ``turn`` event, its arrival at a subscriber less the wall time
  its last sample (``t_end``) was played: by the daemon's file source (its start,
  read from its heartbeats), or sent by the HTTP server (its log of each block);
- reconnection: after a healthy spell (the back-off starts afresh), the server goes
  away for each ``--away`` seconds and returns on its port; the time from its
  return to the source's ``running`` status, and to the next turn event, beside
  when the back-off's next try was due.

Figures are as measured on this machine, under whatever else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit
import numpy as np
import yaml

from vggvox.audio import load_audio, to_int16
from vggvox_client.enroll import enroll
from vggvoxd.netsource import BACKOFF_S, HEALTHY_S

MAX_BYTES = 16 * 1024 * 1024


def events(d: Any, sub: Any, until: float, out: list[dict]) -> None:
    while time.monotonic() < until:
        ev = d.conn.receive(sub, 0.1)
        if ev is not None:
            ev["received"] = time.time()
            out.append(ev)


def wait(d: Any, sub: Any, out: list[dict], source: str, what: str, timeout: float,
         state: str | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(out)
        events(d, sub, time.monotonic() + 0.1, out)
        for ev in out[n:]:
            if ev["source"] == source and ev["type"] == what and \
                    (state is None or ev.get("state") == state):
                return ev
    raise SystemExit(f"no {what} {state or ''} from {source} in {timeout} s:\n{d.output()}")


def latencies(seen: list[dict], source: str, played_at: Any) -> list[float]:
    return [ev["received"] - played_at(ev["t_end"]) for ev in seen
            if ev["source"] == source and ev["type"] == "turn" and ev.get("speaker")]


def sent_at(sent: list[tuple[int, float]]) -> Any:
    """Stream seconds -> when the server sent that sample (its connection began at 0)."""
    pos = np.array([p for p, _ in sent])
    wall = np.array([w for _, w in sent])
    return lambda t: float(np.interp(t * 16000, pos, wall))


def next_try(away: float) -> float:
    """How long after a server's return, ``away`` s after it went, the back-off tries."""
    wait, at = BACKOFF_S[0], 0.0
    while at + wait < away:
        at, wait = at + wait, min(2 * wait, BACKOFF_S[1])
    return at + wait - away


def enroll_first(tmp: Path, convo: Any) -> None:
    d = benchkit.DaemonProcess(tmp, source="stdin").start()
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, MAX_BYTES)
    finally:
        d.stop()


def run(tmp: Path, away: list[float]) -> None:
    from netstreams import HttpStream

    convo = benchkit.conversation(tmp)
    clip = to_int16(load_audio(convo.stream))
    enroll_first(tmp, convo)
    web = HttpStream(clip)
    web.go.set()
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.2}, "sources": [
        {"name": "local", "uri": f"file:{convo.stream}"}, {"name": "web", "uri": web.url}]}))
    d = benchkit.DaemonProcess(tmp, source=None, args=["--config", str(cfg)])
    seen: list[dict] = []
    servers = [web]
    try:
        d.start()
        sub = d.conn.subscribe(["turn", "status"])
        events(d, sub, time.monotonic() + len(clip) / 16000 + 3, seen)
        began = min(ev["time"] - ev["t_end"] for ev in seen if ev["source"] == "local"
                    and ev["type"] == "status" and ev["state"] == "running")
        local = latencies(seen, "local", lambda t: began + t)
        net = latencies(seen, "web", sent_at(list(web.sent)))
        for label, xs in (("local file", local), ("http stream", net)):
            if xs:
                print(f"{label:12s} audio -> turn event: median {statistics.median(xs)*1e3:.0f} "
                      f"ms, max {max(xs)*1e3:.0f} ms over {len(xs)} turn events")
        for seconds in away:
            # A healthy spell first, so each outage starts its back-off afresh (0.5 s).
            events(d, sub, time.monotonic() + HEALTHY_S + 1, seen)
            servers[-1].stop()
            wait(d, sub, seen, "web", "status", 15, "lost")
            time.sleep(seconds)
            back = HttpStream(clip, port=web.port)
            back.go.set()
            servers.append(back)
            t0 = time.time()
            running = wait(d, sub, seen, "web", "status", 60, "running")["received"]
            turn = wait(d, sub, seen, "web", "turn", 30)["received"]
            print(f"away {seconds:4.1f} s: running {running - t0:.2f} s after the server "
                  f"returned, next turn event after {turn - t0:.2f} s (the back-off's "
                  f"next try was due {next_try(seconds):.2f} s after its return)")
    finally:
        d.stop()
        for server in servers:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--away", type=float, nargs="+", default=[1.0, 5.0],
                   help="how long the server stays away, each time (s)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.away)


if __name__ == "__main__":
    main()
