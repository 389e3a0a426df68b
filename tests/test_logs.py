"""Log lines: timestamps in a terminal or file, syslog priorities under journald, and no
platformdirs warning when XDG_RUNTIME_DIR is unset (root shells, cron, containers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def daemon_log(tmp_path: Path, env: dict[str, str]) -> str:
    """The log of a vggvoxd that starts and fails at once (its store path is a folder)."""
    (tmp_path / "store").mkdir(exist_ok=True)
    run = subprocess.run(
        [sys.executable, "-m", "vggvoxd.main", "--store", str(tmp_path / "store"),
         "--control", f"ipc://{tmp_path}/c.sock", "--events", f"ipc://{tmp_path}/e.sock",
         "--source", "stdin"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None})
    return run.stdout + run.stderr


def test_a_terminal_log_has_timestamps(tmp_path: Path) -> None:
    out = daemon_log(tmp_path, {"JOURNAL_STREAM": ""})  # empty: not under journald
    lines = [ln for ln in out.splitlines() if " vggvoxd" in ln]
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", ln)
                         for ln in lines), out


def test_a_journald_log_has_priorities_and_no_timestamps(tmp_path: Path) -> None:
    out = daemon_log(tmp_path, {"JOURNAL_STREAM": "8:12345"})
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines and all(re.match(r"<[2-7]>[A-Z]+ ", ln) for ln in lines), out
    assert any(ln.startswith("<3>ERROR ") for ln in lines), out


def test_configure_refuses_an_unknown_level() -> None:
    import io

    from vggvox import logsetup

    with pytest.raises(ValueError, match="must be one of DEBUG, INFO, WARNING, ERROR"):
        logsetup.configure("LOUD", io.StringIO())


def test_no_runtime_dir_warning_without_xdg_runtime_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(tmp_path)
    code = ("from vggvox.protocol.endpoints import discover; "
            "print(discover('control'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.startswith("ipc://")
