"""vggvoxd's own command line: --version and --list-devices answer at once, without
loading the model."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from vggvox import __version__


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
