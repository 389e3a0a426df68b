"""vggvoxd's own command line: --version and --list-devices answer at once, without
loading the model."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_proc import DaemonProcess

from vggvox import __version__

CLIENT = Path(sys.executable).parent / "vggvox-client"


def vggvoxd(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "vggvoxd.main", *args], capture_output=True,
                         text=True, timeout=60)
    return run, time.monotonic() - t0


def test_version() -> None:
    run, _ = vggvoxd("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"vggvoxd {__version__}"


def test_list_devices_lists_inputs_or_says_there_are_none() -> None:
    run, took = vggvoxd("--list-devices")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines == ["no audio input devices (PortAudio sees none: is a sound server "
                     "running?)"] or all(
        re.match(r"\s*\d+  .+ \(\d+ channels, \d+ Hz\)$", ln) for ln in lines), run.stdout
    assert "model" not in run.stdout and took < 20


def test_print_config_and_unit_print_the_shipped_files() -> None:
    from conftest import ROOT

    run, _ = vggvoxd("--print-config")
    assert run.returncode == 0 and run.stdout == (ROOT / "config" / "vggvoxd.yaml").read_text()
    run, _ = vggvoxd("--print-unit")
    assert run.returncode == 0
    assert run.stdout == (ROOT / "systemd" / "vggvoxd.service").read_text()


def test_no_microphone_says_what_to_try_instead(tmp_path: Path) -> None:
    """`make run` on a machine without an input device: the daemon stays up, waiting,
    its status (and its stage's) says so, and its message says what a newcomer can do
    instead."""
    listed, _ = vggvoxd("--list-devices")
    if not listed.stdout.startswith("no audio input devices"):
        pytest.skip("PortAudio sees an input device here: the message cannot be shown")
    d = DaemonProcess(tmp_path, source="mic", env={"PULSE_SERVER": f"unix:{tmp_path}/none"})
    d.start()
    try:
        deadline = time.monotonic() + 15
        while "no audio input device" not in d.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        status = d.conn.request("status")
        assert status["state"] == "waiting"
        # Its stage says so too: it used to say "mic ok 0 failures" (issue 20), and the
        # client's table shows what it gets.
        assert status["stages"]["mic"]["state"] == "waiting", status["stages"]
        shown = subprocess.run([str(CLIENT), "status", "--control", d.conn.control],
                               capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"^state +waiting$", shown.stdout, re.M), shown.stdout
        assert re.search(r"^  mic +waiting +0 failures$", shown.stdout, re.M), shown.stdout
    finally:
        code, _ = d.stop()
    assert ("no audio input device on this machine (try: make demo, or vggvoxd --source "
            "file:PATH or --source stdin; vggvoxd --list-devices shows what PortAudio sees); "
            "waiting for one") in d.output(), d.output()
    assert code == 0 and "Traceback" not in d.output()
