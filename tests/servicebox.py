"""vggvox installed in a booted container, the way the README says, for
tests/test_service.py: ``sudo make install-service`` in a clone at /opt/vggvox,
with the container's own Python (/usr/bin/python3, outside the homes that the
units' ProtectHome= hides).

The container has no network: pip installs from a wheelhouse built here from
the same constraints (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``), and make's apt step
finds every package it wants already in the root file system (tests/nspawn.py
builds it with ``make deps``'s list), so nothing else differs from a user's install.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nspawn import Container

from conftest import ROOT, copy_tracked

VENV = "/opt/vggvox/.venv"
CLIENT = f"{VENV}/bin/vggvox-client"


def run_apt_packages() -> list[str]:
    """What `make install-service` installs with apt (`make deps`)."""
    out = subprocess.run(["make", "-s", "deps"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    line = next(s for s in out.splitlines() if s.startswith("run, install-service: apt:"))
    return line.split(":", 2)[2].split()


def wheelhouse(src: Path, out: Path) -> Path:
    """Every wheel the install needs (the build backend too), from PyPI or pip's cache."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), "-c",
                    str(ROOT / "constraints.txt"), "pip", "setuptools", "wheel", str(src)],
                   check=True, capture_output=True, timeout=900)
    return out


def checkout(dest: Path) -> Path:
    """The tracked files, as a clone by root (umask 022) has them."""
    if not copy_tracked(dest):
        raise RuntimeError("not a git checkout: cannot tell which files a clone holds")
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644 | (path.stat().st_mode & 0o111))
    return dest


class Box:
    """The container, with the unit-level questions the tests ask of it."""

    def __init__(self, container: Container) -> None:
        self.c = container

    def sh(self, command: str, user: str | None = None, timeout: float = 60,
           check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.c.run(command, user=user, timeout=timeout, check=check, stdin=stdin)

    def client(self, user: str, args: str, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """vggvox-client as ``user``, from a folder of its own."""
        return self.sh(f"cd /tmp && {CLIENT} {args}", user=user, check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def until(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``check()`` holds; fails naming ``what`` after ``timeout``."""
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.2)
        return time.monotonic() - start

    def journal(self, unit: str, *args: str) -> list[dict[str, str]]:
        """The unit's journal entries (JSON fields), oldest first."""
        out = self.sh(f"journalctl -u {unit} -o json --no-pager {' '.join(args)}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        """A root-owned file with ``text``, made private before anything is in it."""
        q = shlex.quote(path)
        self.sh(f"mkdir -p $(dirname {q}) && install -m 0600 /dev/null {q} && cat > {q} && "
                f"chmod {mode} {q}", stdin=text)

    def speakers(self, user: str = "alice") -> list[str]:
        out = self.client(user, "speakers").stdout
        return re.findall(r"^  (\S+)\s", out, re.M)
