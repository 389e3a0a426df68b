"""An abandoned replay's Home Assistant entities go within 10 s (issue 20).

A ``vggvox-client replay --realtime`` is killed (SIGKILL) mid-file: the daemon
ends the silent session with a ``finished`` status marked ``abandoned`` a few
seconds after its last request, and the MQTT bridge, seeing it, empties the
replay's retained discovery configs. Real daemon, client, bridge and Mosquitto;
``bench/abuse_bridges.py`` reports the same figure.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess, stop_process
from speakers_fixture import conversation
from test_mqtt import CLIENT, Broker, Subscriber

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None and
                                not Path("/usr/sbin/mosquitto").exists(),
                                reason="mosquitto is needed (make test installs it)")
CONFIG = "homeassistant/sensor/vggvox_replay_"


def replay_configs(sub: Subscriber) -> dict[str, list[tuple[float, str]]]:
    """Each replay's speaker config topic: its payloads with their arrival times."""
    out: dict[str, list[tuple[float, str]]] = {}
    with sub.lock:
        for t, topic, body, _ in sub.messages:
            if topic.startswith(CONFIG) and topic.endswith("/speaker/config"):
                out.setdefault(topic, []).append((t, body))
    return out


def abandoned_entities_gone_s(tmp: Path, limit_s: float = 60.0) -> float | None:
    """Seconds from SIGKILL of a replay client mid-file to its entities' removal by a
    real bridge; None if they were still there after ``limit_s``."""
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp, args=["--config", str(cfg)]).start(timeout=60)
    broker = Broker(tmp)
    broker.start()
    sub = Subscriber(broker.port)
    bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "mqtt", "--broker", f"127.0.0.1:{broker.port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        sub.wait_for("vggvox/status", "online", timeout=30)
        client = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                                   d.conn.events, "replay", str(conversation(tmp).stream),
                                   "--realtime"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not replay_configs(sub):
            assert time.monotonic() < deadline, "the replay's entities never appeared"
            time.sleep(0.05)
        time.sleep(1.0)  # mid-file: its audio goes on at real-time pace
        assert client.poll() is None, "the replay ended before it could be killed"
        client.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        client.wait(timeout=10)
        while time.monotonic() < killed + limit_s:
            (payloads,) = replay_configs(sub).values()
            gone = [t for t, body in payloads if body == "" and t >= killed]
            if gone:
                return gone[0] - killed
            time.sleep(0.05)
        return None
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        stop_process(bridge)
        sub.close()
        broker.kill()
        d.stop()


def test_an_abandoned_replays_entities_go_within_10_s(tmp_path: Path) -> None:
    took = abandoned_entities_gone_s(tmp_path, limit_s=20.0)
    assert took is not None, "still there 20 s after the client was killed"
    assert took <= 10.0, took
