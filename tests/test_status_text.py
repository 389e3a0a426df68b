"""``vggvox-client status`` shows each stage and source as the daemon reports it.

Issue 20: with no microphone, ``status`` said ``mic ok 0 failures`` while the
source was ``waiting``. The daemon's reply now says ``waiting``; the client's
table must show what it gets, never a state of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_proc import DaemonProcess

from vggvox_client.daemon_cmds import format_status

CLIENT = Path(sys.executable).parent / "vggvox-client"


def test_each_stage_is_shown_as_reported() -> None:
    text = format_status({"state": "waiting", "source": "mic", "stages": {
        "embedder": {"state": "ok", "failures": 0},
        "mic": {"state": "waiting", "failures": 0},
        "kitchen": {"state": "lost", "failures": 3, "last_error": "no audio for 3 s"}},
        "sources": {"mic": {"state": "waiting"}, "kitchen": {"state": "lost"}}})
    assert re.search(r"^state +waiting$", text, re.M)
    assert re.search(r"^  mic +waiting +0 failures$", text, re.M), text
    assert re.search(r"^  kitchen +lost +3 failures  last error: no audio for 3 s$", text, re.M)
    assert re.search(r"^sources\n  mic +waiting ", text, re.M), text


def test_no_microphone_shows_the_source_waiting(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--list-devices"],
                            capture_output=True, text=True, timeout=60)
    if not listed.stdout.startswith("no audio input devices"):
        pytest.skip("PortAudio sees an input device here: no microphone cannot be shown")
    d = DaemonProcess(tmp_path, source="mic", env={"PULSE_SERVER": f"unix:{tmp_path}/none"})
    d.start()
    try:
        deadline = time.monotonic() + 15
        while "no audio input device" not in d.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        shown = subprocess.run([str(CLIENT), "status", "--control", d.conn.control],
                               capture_output=True, text=True, timeout=30)
    finally:
        d.stop()
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^state +waiting$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^  mic +waiting +0 failures$", shown.stdout, re.M), shown.stdout
