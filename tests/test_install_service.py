"""`make install-service` refuses what the units' sandbox cannot see (issue 21).

The units run with ProtectHome=yes: /home, /root and /run/user do not exist for
them. A new user's reading found that a venv made by pyenv's python (under
/root/.pyenv) would install fine and then fail at every start with 203/EXEC.
systemd/install-service.sh now refuses such a checkout or interpreter with one
line saying what to do, before make builds a venv or anything is written; the
install that works (a clone in /opt/vggvox, the system's python) is tested under
a real systemd by tests/test_service.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "systemd" / "install-service.sh"


def check(prefix: Path | str, python: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), "--check", str(prefix), str(python)],
                          capture_output=True, text=True, timeout=30)


def pyenv_like(tmp: Path) -> Path:
    """An interpreter that says it lives under /root, as pyenv's does (the real one
    answers as the script asks: its executable and its prefix, resolved)."""
    fake = tmp / "python3"
    fake.write_text("#!/bin/sh\necho /root/.pyenv/versions/3.11.7/bin/python3.11\n"
                    "echo /root/.pyenv/versions/3.11.7\n")
    fake.chmod(0o755)
    return fake


def test_an_interpreter_under_root_is_refused_with_the_way_out(tmp_path: Path) -> None:
    done = check("/opt/vggvox", pyenv_like(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"install-service: the interpreter {tmp_path}/python3 lives in "
                           "/root/.pyenv/versions/3.11.7/bin/python3.11, which the service "
                           "cannot see (ProtectHome=yes")
    assert line.endswith("rm -rf .venv && make install-service PYTHON=/usr/bin/python3")


@pytest.mark.parametrize("prefix", ["/home/alice/vggvox", "/root/vggvox", "/run/user/1000/v"])
def test_a_checkout_in_a_home_is_refused(prefix: str) -> None:
    done = check(prefix, "/usr/bin/python3")
    assert done.returncode == 2
    assert done.stderr == (f"install-service: {prefix} is under /home, /root or /run/user, "
                           "which the service cannot see (ProtectHome=yes); clone vggvox to "
                           "/opt/vggvox and install from there\n")


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python3 here")
def test_the_system_python_in_opt_passes() -> None:
    done = check("/opt/vggvox", "/usr/bin/python3")
    assert (done.returncode, done.stderr) == (0, "")


def test_make_refuses_before_building_or_writing_anything(tmp_path: Path) -> None:
    units = [Path("/etc/systemd/system") / f"{u}.service"
             for u in ("vggvoxd", "vggvox-mqtt", "vggvox-web")]
    before = [u.exists() for u in units]
    done = subprocess.run(["make", "-s", "install-service", f"PYTHON={pyenv_like(tmp_path)}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.startswith("install-service: the interpreter"), done.stderr
    assert "pip" not in done.stdout + done.stderr  # no venv was built
    assert [u.exists() for u in units] == before
