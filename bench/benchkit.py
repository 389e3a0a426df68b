"""What the benches share, and the one module of bench/ that knows where the tests' helpers live.

A bench runs as a script (``.venv/bin/python bench/bench_x.py``, from any folder), so
Python puts bench/ first on sys.path and ``from benchkit import DaemonProcess`` finds
this file. Importing it adds tests/ (the suite's daemon runner, speakers fixture,
floods, the bridges' harness, ...) and weights/ (the maintainer's tools) to sys.path,
after the installed packages. The names in ``_HARNESS`` are imported from there on
first use, so a bench loads only the helpers it takes. Its own: the checkout's folder,
the client's command, and the /proc figures of a daemon process.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The checkout."""

for _folder in (ROOT / "tests", ROOT / "weights"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

CLIENT = Path(sys.executable).parent / "vggvox-client"
"""The command-line client of this interpreter's environment."""

# Each name a bench takes from tests/ (or weights/), and the module that defines it.
_HARNESS = {
    # the shared data (../shared/data): fixture clips, development speech
    "FIXTURES": "conftest",
    "SPEECH": "conftest",
    "write_wav": "conftest",
    "DaemonProcess": "daemon_proc",
    "free_port": "daemon_proc",
    "conversation": "speakers_fixture",
    "score_events": "speakers_fixture",
    "ask_status": "floods",
    "dealer": "floods",
    "Reader": "store_reader",
    "PostgresServer": "pgserver",
    # the attacks and bridges of the suite, measured by the abuse and bridge benches
    "abandoned_entities_gone_s": "test_mqtt_abandoned_replay",
    "run_outage": "test_mqtt_outage",
    "Broker": "test_mqtt",
    "into_head": "test_pipes",
    "wait_pane": "test_watch",
    "idle": "test_prometheus",
    "metrics_daemon": "test_prometheus",
    "tmpfs": "test_store_health",
    "encode_with_pyav": "test_audio",
    "many_channels": "test_audio",
    "many_samples_m4a": "test_audio",
    "tone": "test_audio",
    "two_hours_of_flac": "test_audio",
    "Bridge": "test_web",
    "chromium": "test_web",
    "fetch": "test_web",
    "start_web": "test_web",
    "stop_web": "test_web",
    "ATTACK": "test_web_guard",
    "QuietHandler": "test_web_guard",
    "paging": "test_web_limits",
    "request": "test_web_limits",
    "status_of": "test_web_limits",
    # weights/calibrate_shipped.py: the development speech's utterance lists
    "write_lists": "calibrate_shipped",
}

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far (user + system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_mb(pid: int) -> float:
    """A process's resident memory now, in MB (0 when /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def __getattr__(name: str) -> Any:
    if name in _HARNESS:
        return getattr(importlib.import_module(_HARNESS[name]), name)
    raise AttributeError(f"module 'benchkit' has no attribute {name!r}")
