"""What a bridge costs in continuous speech: its own CPU, and the daemon's.

    .venv/bin/python bench/bench_mqtt.py [--bridge mqtt|web|watch] [--seconds 40] [--runs 2]

Runs the real daemon on one source of continuous speech at real-time pace (as
bench_metrics.py), with the bridge and without it, alternating runs:
``vggvox-client mqtt`` publishing to a private Mosquitto on loopback, or
``vggvox-client web`` with one page's event stream open (an HTTP client reading
/events, as a browser's EventSource does), or ``vggvox-client watch`` in a tmux
pane. Prints the bridge's CPU and the
daemon's with and without it, in % of one core; the issue's bound is 1 % of a
core added.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml
from bench_capacity import speakers_clips, stream_file
from benchkit import CLIENT, SPEECH, Broker, DaemonProcess, cpu_seconds


class Pane:
    """The watch view's tmux pane, stopped like a process."""

    def __init__(self, session: str, pid: int) -> None:
        self.session, self.pid = session, pid

    def terminate(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)

    def wait(self, timeout: float) -> None:
        pass


TOKEN = "bench-web-token-0123456789abcdef"


def read_events(port: int, stop: threading.Event) -> None:
    """A page's EventSource: read /events (with the page's token) until told to stop."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?token={TOKEN}",
                                timeout=10) as r:
        while not stop.is_set() and r.readline():
            pass


def run(tmp: Path, wav: Path, bridged: bool, seconds: float,
        kind: str = "mqtt") -> tuple[float, float]:
    """(daemon's CPU %, bridge's CPU %) while ``wav`` plays."""
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    (run_dir / "c.yaml").write_text(yaml.safe_dump({
        "sources": [{"name": "room", "uri": f"file:{wav}"}], "logging": {"level": "WARNING"}}))
    d = DaemonProcess(run_dir, source=None, args=["--config", str(run_dir / "c.yaml")])
    d.start(timeout=60)
    broker = Broker(run_dir)
    bridge: subprocess.Popen[bytes] | Pane | None = None
    page = threading.Event()
    if bridged and kind == "mqtt":
        broker.start()
        bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                                   d.conn.events, "mqtt", "--broker",
                                   f"127.0.0.1:{broker.port}"])
    elif bridged and kind == "watch":  # in a tmux pane: the view needs a terminal
        session = f"bench-watch-{os.getpid()}"
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                        f"exec env -u COLUMNS -u LINES {CLIENT} --control {d.conn.control} "
                        f"--events {d.conn.events} watch"], check=True)
        pane_pid = subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"],
                                  capture_output=True, text=True).stdout.split()[0]
        bridge = Pane(session, int(pane_pid))
    elif bridged:  # the page needs its token: a private token file
        token = run_dir / "web.token"
        token.write_text(TOKEN)
        token.chmod(0o600)
        bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                                   d.conn.events, "web", "--listen",
                                   f"127.0.0.1:{broker.port}", "--token-file", str(token)],
                                  stdout=subprocess.DEVNULL)
        time.sleep(1.5)
        threading.Thread(target=read_events, args=(broker.port, page), daemon=True).start()
    try:
        time.sleep(1.0)
        pids = [d.proc.pid] + ([bridge.pid] if bridge else [])  # type: ignore[union-attr]
        c0, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - t0
        shares = [100 * (cpu_seconds(p) - c) / wall for p, c in zip(pids, c0, strict=True)]
    finally:
        page.set()
        if bridge is not None:
            bridge.terminate()
            bridge.wait(timeout=10)
            if kind == "mqtt":
                broker.kill()
        d.stop()
    return shares[0], shares[1] if bridged else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--bridge", choices=("mqtt", "web", "watch"), default="mqtt")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vggvox-mqtt-") as name:
        tmp = Path(name)
        wav = stream_file(speakers_clips(SPEECH, 1)[0], args.seconds + 5, 0.0, tmp / "s.wav")
        with_bridge: list[tuple[float, float]] = []
        without: list[float] = []
        for i in range(args.runs):
            for bridged in (True, False) if i % 2 == 0 else (False, True):
                daemon, bridge = run(tmp, wav, bridged, args.seconds, args.bridge)
                if bridged:
                    with_bridge.append((daemon, bridge))
                else:
                    without.append(daemon)
    d_on = statistics.median(d for d, _ in with_bridge)
    b = statistics.median(b for _, b in with_bridge)
    d_off = statistics.median(without)
    print(f"continuous speech, {args.seconds:.0f} s x {args.runs} runs each, alternating: "
          f"{args.bridge} bridge {b:.2f} % of a core; daemon {d_on:.1f} % with it, "
          f"{d_off:.1f} % without ({d_on - d_off:+.2f} points); added in all "
          f"{b + d_on - d_off:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
