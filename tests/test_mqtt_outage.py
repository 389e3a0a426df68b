"""The MQTT bridge through a broker outage: news is never replayed as new.

A real daemon hears continuous speech on stdin at real-time pace; the real
bridge publishes to a real Mosquitto through a TCP proxy that fails as a
network does: it cuts the bridge off and refuses it (a broker restart, a
link down), or stalls, holding the bridge's bytes, then lets them through (a
frozen broker, a partition that heals). A real subscriber on the broker's own
port sees everything, and measures each turn message's age from the ``time``
the daemon stamped on it. After the outage, no turn message older than
``mqttqueue.MAX_AGE_S`` may reach it, and the state must come back.
``bench/abuse_bridges.py`` runs the same with the issue's 48 s outage.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import conversation
from test_mqtt import CLIENT, Broker, Subscriber

from vggvox.audio import load_audio, to_int16

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/mosquitto").exists()
                                and __import__("shutil").which("mosquitto") is None,
                                reason="mosquitto is needed (make test installs it)")


class Proxy:
    """A TCP forwarder to ``port`` that can fail: ``refuse`` (connections cut, new ones
    closed at once) or ``stall`` (connections kept, nothing forwarded; bytes wait in
    the kernel's buffers and go through on ``up``)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.mode = "up"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.mode != "up":
                conn.close()
                continue
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            self.pairs.append((conn, up))
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self.closed:
                if self.mode == "stall":
                    time.sleep(0.05)
                    continue
                if not select.select([src], [], [], 0.1)[0]:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # closed by refuse()
            pass
        for s in (src, dst):
            s.close()

    def refuse(self) -> None:
        self.mode = "refuse"
        for pair in self.pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.pairs.clear()

    def stall(self) -> None:
        self.mode = "stall"

    def up(self) -> None:
        self.mode = "up"

    def close(self) -> None:
        self.closed = True
        self.refuse()
        self.listener.close()


def speak(d: DaemonProcess, audio: np.ndarray, stop: threading.Event) -> None:
    """Real-time speech into the daemon's stdin, round and round, until ``stop``."""
    assert d.proc is not None and d.proc.stdin is not None
    pcm, block, t0, sent = to_int16(audio).tobytes(), 3200, time.monotonic(), 0
    while not stop.is_set():
        at = (sent * block) % len(pcm)
        chunk = (pcm[at:] + pcm)[:block]
        try:
            d.proc.stdin.write(chunk)
            d.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return
        sent += 1
        time.sleep(max(0.0, t0 + sent * block / 32000 - time.monotonic()))


@dataclass
class Outage:
    stale: int
    """Turn messages more than 5 s old that reached the subscriber after the outage."""
    oldest_s: float
    """The oldest turn message's age after the outage (0 if none)."""
    after: int
    """Turn messages after the outage."""
    back_s: float
    """From the end of the outage to the state's first republication."""
    log: str


def turns_after(sub: Subscriber, topic: str, since: float) -> list[float]:
    """Ages (s) of the turn messages received since ``since`` (monotonic)."""
    offset = time.time() - time.monotonic()
    with sub.lock:
        got = [(t, body) for t, top, body, _ in sub.messages if top == topic and t >= since]
    return [t + offset - json.loads(body)["time"] for t, body in got]


def run_outage(tmp: Path, mode: str, outage_s: float, after_s: float = 8.0,
               env: dict[str, str] | None = None) -> Outage:
    """The bridge through one outage of ``mode`` (refuse or stall) lasting ``outage_s``;
    ``env``: the bridge's environment (a PYTHONPATH with another version of it, say)."""
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp, source="stdin", args=["--config", str(cfg)]).start(timeout=60)
    broker = Broker(tmp)
    broker.start()
    proxy = Proxy(broker.port)
    sub = Subscriber(broker.port)
    stop = threading.Event()
    log = tmp / "bridge.log"
    bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "mqtt", "--broker", f"127.0.0.1:{proxy.port}",
                               "--log-level", "INFO"], stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, env=env)
    feeder = threading.Thread(target=speak, args=(d, load_audio(conversation(tmp).stream),
                                                   stop), daemon=True)
    feeder.start()
    topic = "vggvox/stdin/turn"
    try:
        sub.wait_for(topic, timeout=60)  # turns flow
        getattr(proxy, mode)()
        time.sleep(outage_s)
        proxy.up()
        healed = time.monotonic()
        back = sub.wait_for("vggvox/stdin/speaker", since=healed, timeout=30)
        assert back is not None
        with sub.lock:
            back_at = min(t for t, top, _, _ in sub.messages
                          if top == "vggvox/stdin/speaker" and t >= healed)
        time.sleep(after_s)
        ages = turns_after(sub, topic, healed)
    finally:
        stop.set()
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(timeout=5)
        sub.close()
        proxy.close()
        broker.kill()
        d.stop()
    return Outage(sum(a > 5.0 for a in ages), max(ages, default=0.0), len(ages),
                  back_at - healed, log.read_text(errors="replace"))


@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_no_stale_turn_message_after_an_outage(tmp_path: Path, mode: str) -> None:
    out = run_outage(tmp_path, mode, outage_s=8.0)
    assert out.stale == 0, (out, out.log)
    assert out.after > 0, out.log  # turns flow again
    assert "turn messages are dropped" in out.log and "Traceback" not in out.log, out.log
