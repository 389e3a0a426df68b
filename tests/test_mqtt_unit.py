"""systemd/vggvox-mqtt.service takes the broker password as a systemd credential.

Issue 20: the unit could not read ``~/.mqtt-pw`` (``ProtectHome=yes``), where
the README put it. Now systemd reads ``/etc/vggvox/mqtt-password`` (root's,
0600) and hands the sandboxed service its copy in ``$CREDENTIALS_DIRECTORY``.
Checked here: the unit's settings and sandbox, ``systemd-analyze verify`` of the
unit as ``make install-service`` writes it, and the unit's own ExecStart line,
run as systemd would expand it, logging in to a real Mosquitto that needs the
password (and, with the blank default credential, to one that needs none).
(tests/test_systemd.py scores the unit's exposure.)
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from daemon_proc import DaemonProcess, stop_process
from test_mqtt import Broker, Subscriber
from unitfile import settings as unit_settings

from conftest import ROOT

UNIT = ROOT / "systemd" / "vggvox-mqtt.service"


def settings() -> dict[str, list[str]]:
    return unit_settings(UNIT)


def test_the_password_is_a_credential_and_the_sandbox_stays() -> None:
    s = settings()
    assert s["LoadCredential"] == ["mqtt-password:/etc/vggvox/mqtt-password"]
    assert s["SetCredential"] == ["mqtt-password:\\n"]  # blank when no file: no password
    assert "--password-file ${CREDENTIALS_DIRECTORY}/mqtt-password" in s["ExecStart"][0]
    for key, value in (("ProtectHome", "yes"), ("DynamicUser", "yes"),
                       ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes"),
                       ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")):
        assert s[key] == [value], key
    assert "~/" not in UNIT.read_text() and "/home" not in UNIT.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    """As installed (``/opt/vggvox`` replaced by the clone), so that ExecStart exists."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/vggvox", str(ROOT)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def exec_start(credentials: Path, args: str) -> list[str]:
    """The unit's ExecStart as systemd expands it: the clone for /opt/vggvox,
    VGGVOX_MQTT_ARGS split on spaces, ${CREDENTIALS_DIRECTORY} as given."""
    line = settings()["ExecStart"][0].replace("/opt/vggvox", str(ROOT))
    line = line.replace("${CREDENTIALS_DIRECTORY}", str(credentials))
    words = shlex.split(line)
    i = words.index("$VGGVOX_MQTT_ARGS")
    return words[:i] + args.split() + words[i + 1:]


def logs_in(d: DaemonProcess, broker: Broker, credentials: Path, args: str,
            sub: Subscriber) -> str:
    bridge = subprocess.Popen(exec_start(credentials, args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        sub.wait_for("vggvox/status", "online", timeout=30)
    finally:
        out = stop_process(bridge)
    assert bridge.returncode == 0 and "Traceback" not in out, out
    return out


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None or
                    (shutil.which("mosquitto") is None and
                     not Path("/usr/sbin/mosquitto").exists()),
                    reason="mosquitto and mosquitto_passwd are needed (make test installs them)")
def test_the_units_command_logs_in_with_the_credential(tmp_path: Path) -> None:
    # Status every 0.5 s (not 5): the bridge says online at its first event from the daemon.
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text("status: {interval_s: 0.5}\n")
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start(timeout=60)
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "mqtt-password").write_text("s3cret\n")
    os.chmod(creds / "mqtt-password", 0o400)
    endpoints = f"--control {d.conn.control} --events {d.conn.events}"
    broker = Broker(tmp_path).with_password(tmp_path, "vggvox", "s3cret")
    broker.start()
    sub = Subscriber(broker.port, "vggvox", "s3cret")
    try:
        out = logs_in(d, broker, creds, f"--broker 127.0.0.1:{broker.port} --username "
                                        f"vggvox {endpoints}", sub)
        assert not re.search(r"refused the connection", out), out
    finally:
        sub.close()
        broker.kill()
    # No password file: systemd's default credential is a blank line; an anonymous
    # broker takes the bridge as it is.
    blank = tmp_path / "blank"
    blank.mkdir(mode=0o700)
    (blank / "mqtt-password").write_text("\n")
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port)
    try:
        logs_in(d, broker, blank, f"--broker 127.0.0.1:{broker.port} {endpoints}", sub)
    finally:
        sub.close()
        broker.kill()
        d.stop()
