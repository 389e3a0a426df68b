"""The MQTT bridge against a real Mosquitto on loopback, subscribed by a real client.

It replays a conversation through a real daemon and checks, in order, the
speaker states the bridge publishes; checks its Home Assistant discovery
payloads against the documented MQTT sensor options; removes a replay's
entities when it ends; and after the broker is killed and restarted (losing its
retained messages) gets the state back from the bridge alone.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_proc import DaemonProcess, free_port, stop_process
from speakers_fixture import conversation

from vggvox_client.bridges.mqtt.bridge import topic_name
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None and
                                not Path("/usr/sbin/mosquitto").exists(),
                                reason="mosquitto is needed (make test installs it)")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLIENT = Path(sys.executable).parent / "vggvox-client"
# Started as root, mosquitto becomes user "mosquitto", who cannot read the test's files.
USER = f"user {pwd.getpwuid(os.getuid()).pw_name}\n"

# Home Assistant's documented options of an MQTT sensor, and of its device map
# (https://www.home-assistant.io/integrations/sensor.mqtt/).
SENSOR_OPTIONS = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "device_class", "default_entity_id", "enabled_by_default", "encoding",
    "entity_category", "entity_picture", "expire_after", "force_update", "icon",
    "json_attributes_template", "json_attributes_topic", "last_reset_value_template", "name",
    "object_id", "options", "payload_available", "payload_not_available", "platform", "qos",
    "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template"}
DEVICE_OPTIONS = {"configuration_url", "connections", "hw_version", "identifiers",
                  "manufacturer", "model", "model_id", "name", "serial_number",
                  "suggested_area", "sw_version", "via_device"}


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence false\n{USER}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=5)

    def with_password(self, tmp: Path, user: str, password: str) -> Broker:
        """Refuse anonymous clients: only ``user`` with ``password`` (mosquitto_passwd)."""
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp / "passwd"), user, password],
                       check=True, timeout=10)
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous false\n"
                             f"password_file {tmp / 'passwd'}\npersistence false\n{USER}")
        return self


class Subscriber:
    """A real MQTT client that records every message under '#'."""

    def __init__(self, port: int, username: str | None = None,
                 password: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, msg.payload.decode(),
                                  bool(msg.retain)))

    def wait_for(self, topic: str, payload: str | None = None, since: float = 0.0,
                 timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for t, top, body, _ in self.messages:
                    if t >= since and top == topic and (payload is None or body == payload):
                        return body
            time.sleep(0.05)
        raise AssertionError(f"no {topic} {payload!r} after {timeout} s: {self.messages[-20:]}")

    def payloads(self, topic: str) -> list[str]:
        with self.lock:
            return [body for _, top, body, _ in self.messages if top == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def check_discovery(payload: dict[str, Any], name: str, what: str) -> None:
    assert set(payload) <= SENSOR_OPTIONS, set(payload) - SENSOR_OPTIONS
    assert set(payload["device"]) <= DEVICE_OPTIONS, set(payload["device"]) - DEVICE_OPTIONS
    assert payload["state_topic"] == f"vggvox/{name}/{what}"
    assert payload["unique_id"] == f"vggvox_{name}_{what}"
    assert payload["default_entity_id"] == f"sensor.vggvox_{name}_{what}"
    assert payload["availability_topic"] == "vggvox/status"
    assert (payload["payload_available"], payload["payload_not_available"]) == ("online",
                                                                                 "offline")
    assert payload["device"]["identifiers"] == [f"vggvox_{name}"]


def test_topic_names_are_safe() -> None:
    assert topic_name("Kitchen Mic #2") == "kitchen_mic_2"
    assert topic_name("replay:talk.wav-0123abcd") == "replay_talk_wav_0123abcd"


def test_the_bridge_publishes_turns_and_survives_a_broker_restart(tmp_path: Path) -> None:
    convo = conversation(tmp_path)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port)
    bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "mqtt", "--broker", f"127.0.0.1:{broker.port}",
                               "--log-level", "INFO"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, 16 << 20)
        sub.wait_for("vggvox/status", "online")
        check_discovery(json.loads(sub.wait_for(
            "homeassistant/sensor/vggvox_stdin/speaker/config")), "stdin", "speaker")
        check_discovery(json.loads(sub.wait_for(
            "homeassistant/sensor/vggvox_stdin/confidence/config")), "stdin", "confidence")

        events = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
        replay = topic_name(events[0]["source"])
        config = f"homeassistant/sensor/vggvox_{replay}/speaker/config"
        sub.wait_for(config, "")  # the replay ended: its entity is removed
        check_discovery(json.loads(next(p for p in sub.payloads(config) if p)), replay,
                        "speaker")
        said = [p for p in sub.payloads(f"vggvox/{replay}/speaker") if p]
        heard = [s for i, s in enumerate(said) if i == 0 or s != said[i - 1]]
        spoken = [t[2] for t in convo.turns]
        assert heard == [s for i, s in enumerate(spoken) if i == 0 or s != spoken[i - 1]]
        turns = [json.loads(p) for p in sub.payloads(f"vggvox/{replay}/turn")]
        assert turns and all(t["type"] == "turn" for t in turns)
        assert float(sub.payloads(f"vggvox/{replay}/confidence")[-2]) > 0.5

        broker.kill()  # retained messages are gone with it (no persistence)
        time.sleep(1.0)
        restarted = time.monotonic()
        broker.start()
        sub.wait_for("vggvox/status", "online", since=restarted, timeout=60)
        sub.wait_for("homeassistant/sensor/vggvox_stdin/speaker/config", since=restarted,
                     timeout=60)

        d.stop()
        sub.wait_for("vggvox/status", "offline", since=restarted, timeout=30)
    finally:
        out = stop_process(bridge)
        sub.close()
        broker.kill()
        d.stop()
    assert bridge.returncode == 0, out
    assert "Traceback" not in out


def heartbeat_daemon(tmp: Path) -> DaemonProcess:
    """A daemon whose status events come every 0.5 s, not 5: the bridge says online at
    its first event from the daemon, so a login is seen within a second of being made."""
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    return DaemonProcess(tmp, args=["--config", str(cfg)]).start()


def bridge_gets_on(d: DaemonProcess, sub: Subscriber, port: int, *extra: str) -> None:
    """Run the bridge against the broker on ``port`` until the recorder sees it online with
    its discovery config, then stop it: it must exit 0, without a traceback."""
    bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "mqtt", "--broker", f"127.0.0.1:{port}", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sub.wait_for("vggvox/status", "online", timeout=30)
        sub.wait_for("homeassistant/sensor/vggvox_stdin/speaker/config", timeout=30)
    finally:
        out = stop_process(bridge)
    assert bridge.returncode == 0 and "Traceback" not in out, out


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd needed")
def test_the_bridge_logs_in_with_a_password_file(tmp_path: Path) -> None:
    d = heartbeat_daemon(tmp_path)
    broker = Broker(tmp_path).with_password(tmp_path, "vggvox", "s3cret")
    broker.start()
    (tmp_path / "pw").write_text("s3cret\n")
    sub = Subscriber(broker.port, "vggvox", "s3cret")  # the recorder, as the same user
    try:
        bridge_gets_on(d, sub, broker.port, "--username", "vggvox",
                       "--password-file", str(tmp_path / "pw"))
    finally:
        sub.close()
        broker.kill()
        d.stop()


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA, and a certificate it signs for 127.0.0.1 (openssl)."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key",
                                                        "server.csr", "server.pem"))
    run = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True,  # noqa: E731
                                    capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
        "-days", "1", "-subj", "/CN=vggvox test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", ext)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed")
def test_the_bridge_speaks_tls_to_a_broker_with_its_own_ca(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    d = heartbeat_daemon(tmp_path)
    broker = Broker(tmp_path)
    tls_port = free_port()
    # A plain listener for the recorder, and a TLS one (only) for the bridge.
    broker.conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n"
                           f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\n"
                           f"keyfile {key}\npersistence false\n{USER}")
    broker.start()
    sub = Subscriber(broker.port)
    args = [str(CLIENT), "--control", d.conn.control, "--events", d.conn.events, "mqtt",
            "--broker", f"127.0.0.1:{tls_port}"]
    # With the system's CAs the broker's certificate is not trusted: it never gets on.
    untrusting = subprocess.Popen([*args, "--tls"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    time.sleep(5)
    untrusting.send_signal(signal.SIGTERM)
    untrusting.wait(timeout=10)
    assert sub.payloads("vggvox/status") == []
    try:
        bridge_gets_on(d, sub, tls_port, "--ca-file", str(ca))
    finally:
        sub.close()
        broker.kill()
        d.stop()
