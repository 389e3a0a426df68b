"""A minimal Debian booted with a real systemd as PID 1, for tests/test_service.py.

The root file system is made once by ``debootstrap`` from the machine's own
Debian mirror (the first ``deb`` source of its apt configuration) and cached in
``CACHE``, named by what it holds; a cached tree is never written to: each boot
lays a tmpfs over it (``systemd-nspawn --volatile=overlay``), so a test cannot
leave anything behind for the next run. The container has a network namespace
of its own with only loopback (``--private-network``): what it serves, and its
broker, are reachable from inside it alone.

Commands run in the container through ``nsenter`` into the namespaces of its
PID 1, with a clean environment (nothing of the host's PATH or variables).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("VGGVOX_NSPAWN_CACHE", "/var/cache/vggvox-tests"))
SUITE = "bookworm"
# Beside what `make install-service` installs itself (read from `make deps`, so
# that its apt step finds nothing missing and needs no network): systemd as PID 1,
# D-Bus for systemctl, make for the README's install, and a broker for the bridge.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "make", "mosquitto")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "HOME": "/root"}


def why_not() -> str | None:
    """Why a container cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make test installs systemd-container, debootstrap)"
    if mirror() is None:
        return "no Debian mirror in this machine's apt sources to debootstrap from"
    return None


def mirror() -> str | None:
    """The first Debian archive this machine's apt uses for SUITE (not -security)."""
    sources = Path("/etc/apt/sources.list.d").glob("*.sources")
    for path in sorted(sources):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                return fields.get("URIs", "").split()[0] or None
    listed = Path("/etc/apt/sources.list")
    for line in listed.read_text().splitlines() if listed.exists() else []:
        # deb [options] URI SUITE COMPONENTS...
        parts = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
            return parts[1]
    return None


def rootfs(packages: list[str]) -> Path:
    """The cached root file system holding ``packages`` (made here the first time:
    about a minute and 450 MB), built in a temporary folder and renamed into place,
    so that an interrupted build is never taken for a finished one."""
    wanted = sorted(set(BASE_PACKAGES) | set(packages))
    key = hashlib.sha256(f"{SUITE} {' '.join(wanted)}".encode()).hexdigest()[:12]
    root = CACHE / f"{SUITE}-{key}"
    if (root / "usr" / "lib" / "systemd" / "systemd").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=CACHE))
    done = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(wanted)}",
                           SUITE, str(build), str(mirror())],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise RuntimeError(f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    build.rename(root)
    return root


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Container:
    """One boot of ``root``; ``binds`` are host folders shown read-only inside."""

    def __init__(self, root: Path, binds: dict[Path, str]) -> None:
        cmd = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--private-network",
               "--volatile=overlay", "-D", str(root), "--boot", "--console=pipe",
               *[f"--bind-ro={host}:{inside}" for host, inside in binds.items()]]
        # Its console is the journal's business: kept out of the test's output.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.leader = self._leader(deadline=time.monotonic() + 30)

    def _leader(self, deadline: float) -> int:
        """The container's PID 1, seen from here: the systemd that nspawn's child
        becomes (its first child is a helper that execs or exits in between)."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}")
            for pid in children(self.proc.pid):
                for candidate in (pid, *children(pid)):
                    try:
                        if Path(f"/proc/{candidate}/comm").read_text().strip() == "systemd":
                            return candidate
                    except OSError:
                        pass  # gone in between
            time.sleep(0.05)
        raise RuntimeError("systemd-nspawn started no systemd within 30 s")

    def run(self, command: str, user: str | None = None, timeout: float = 60,
            check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A shell command in the container (as root, or ``user`` with its groups)."""
        argv = ["sh", "-c", command]
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "-r", "-w",
                               "env", "-i", *[f"{k}={v}" for k, v in ENV.items()], *argv],
                              input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"in the container, {command!r} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def wait_booted(self, timeout: float = 60) -> str:
        """Once boot is over: ``running``, or ``degraded`` with the failed units named."""
        deadline = time.monotonic() + timeout
        state = "offline"  # what systemctl says before PID 1 answers on its socket
        while state in ("offline", "") and time.monotonic() < deadline:
            state = self.run("systemctl is-system-running --wait", check=False,
                             timeout=max(1.0, deadline - time.monotonic())).stdout.strip()
            if state in ("offline", ""):
                time.sleep(0.1)
        if state != "running":
            failed = self.run("systemctl --failed --no-legend", check=False).stdout
            raise AssertionError(f"the container booted {state!r}: {failed}")
        return state

    def poweroff(self, timeout: float = 30) -> int:
        """Shut it down as an administrator would; its exit status (0: clean)."""
        if self.proc.poll() is None:
            self.run("systemctl poweroff", check=False, timeout=10)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"the container did not power off within {timeout} s") from None
        return self.proc.returncode

    def kill(self) -> None:
        """End it at once: its PID 1 first (the kernel then ends every process in it)."""
        for pid, kill in ((self.leader, os.kill), (self.proc.pid, os.killpg)):
            try:
                kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
