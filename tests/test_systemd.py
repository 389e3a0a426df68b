"""The systemd unit: notify type, restarts, state directory, and its hardening score."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from unitfile import settings as unit_settings

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "vggvoxd.service"


def settings() -> dict[str, list[str]]:
    return unit_settings(UNIT)


def test_unit_contract() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"]
    assert s["StateDirectory"] == ["vggvox"] and s["RuntimeDirectory"] == ["vggvox"]
    assert "WatchdogSec" in s and s["ExecReload"] == ["/bin/sh -c 'kill -HUP \"$$MAINPID\"'"]
    assert s["DeviceAllow"] == ["char-alsa rw"]
    # The group whose members may use the client (created by sysusers.d), and capture.
    assert s["Group"] == ["vggvox"] and s["SupplementaryGroups"] == ["audio"]
    assert s["ExecStart"][0].endswith("--socket-group vggvox")
    assert s["RuntimeDirectoryMode"] == ["0750"]
    sysusers = UNIT.with_name("vggvox.sysusers").read_text()
    assert "g vggvox -" in sysusers.splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_security_exposure_at_most_2() -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for vggvoxd\.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0


BRIDGE = UNIT.with_name("vggvox-mqtt.service")


WEB = UNIT.with_name("vggvox-web.service")

SATELLITE = UNIT.with_name("vggvox-satellite.service")


@pytest.mark.parametrize(("unit", "command"), [(BRIDGE, "mqtt $VGGVOX_MQTT_ARGS"),
                                               (WEB, "web $VGGVOX_WEB_ARGS")])
def test_bridge_units_run_the_client_in_the_socket_group(unit: Path, command: str) -> None:
    text = unit.read_text()
    assert f"ExecStart=/opt/vggvox/.venv/bin/vggvox-client {command}" in text
    assert "SupplementaryGroups=vggvox" in text.splitlines()
    assert any(line.startswith("After=vggvoxd.service") for line in text.splitlines())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", [BRIDGE, WEB, SATELLITE])
def test_bridge_security_exposure_at_most_2(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(rf"Overall exposure level for {re.escape(unit.name)}: ([0-9.]+)",
                      done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0


def test_satellite_unit_reads_its_keys_as_credentials() -> None:
    s = unit_settings(SATELLITE)
    (start,) = s["ExecStart"]
    assert start.startswith("/opt/vggvox/.venv/bin/vggvox-client satellite $VGGVOX_SATELLITE_ARGS")
    assert "--key ${CREDENTIALS_DIRECTORY}/satellite.key_secret" in start
    assert "--server-key ${CREDENTIALS_DIRECTORY}/vggvoxd.key" in start
    assert len(s["LoadCredential"]) == 2 and s["Restart"] == ["on-failure"]
    assert s["SupplementaryGroups"] == ["audio"] and s["DeviceAllow"] == ["char-alsa rw"]
