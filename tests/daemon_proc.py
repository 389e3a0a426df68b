"""Run the real vggvoxd in a subprocess, on ipc:// endpoints inside a temp folder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from vggvox_client.connection import ClientError, Connection


class DaemonProcess:
    def __init__(self, tmp: Path, source: str | None = "stdin", args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.store = tmp / "voiceprints.db"
        self.log = tmp / "vggvoxd.log"
        self.conn = Connection(f"ipc://{tmp}/control.sock", f"ipc://{tmp}/events.sock")
        self.argv = [sys.executable, "-m", "vggvoxd.main", "--events", self.conn.events,
                     "--control", self.conn.control, "--store", str(self.store),
                     *(["--source", source] if source is not None else []), *(args or [])]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.PIPE,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vggvoxd exited {self.proc.returncode}: {self.output()}")
            try:
                self.conn.request("status", timeout=0.5)
                return self
            except ClientError:
                time.sleep(0.1)
        raise RuntimeError(f"vggvoxd did not answer within {timeout} s: {self.output()}")

    def feed(self, data: bytes, close: bool = True) -> threading.Thread:
        """Write ``data`` to the daemon's stdin in a thread (a lossless stdin source holds
        its writer back), then close it (EOF) if ``close``."""
        assert self.proc is not None and self.proc.stdin is not None
        stdin = self.proc.stdin

        def run() -> None:
            try:
                stdin.write(data)
                stdin.flush()
                if close:
                    stdin.close()
            except (BrokenPipeError, ValueError):
                pass  # the daemon went away, or the pipe was closed under us

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_exit(self, timeout: float) -> tuple[int | None, float]:
        """Wait up to ``timeout`` s for the daemon to exit by itself: (its exit status,
        None if it is still running; the wall time it was seen, within 10 ms)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.proc.poll(), time.time()

    def cpu_s(self) -> float:
        """The CPU seconds (user and system) the daemon has used: work done, which a
        loaded machine does not stretch as it stretches wall time."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until the daemon uses almost no CPU (under 50 ms) in 0.5 s, twice in a row:
        whatever it was computing is done, and a thread of it may be waiting (for a
        lock, say). CPU time: a loaded machine only makes this wait longer."""
        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 2:
            assert time.monotonic() < deadline, f"the daemon never went idle: {self.output()}"
            used = self.cpu_s()
            time.sleep(0.5)
            quiet = quiet + 1 if self.cpu_s() - used < 0.05 else 0

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        assert self.proc is not None
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode, time.monotonic() - t0


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """SIGTERM a client process (a bridge) and wait; killed if it outlives ``timeout``.
    Returns what it printed, when its output was piped."""
    proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate(timeout=5)[0]
    return (out or b"").decode(errors="replace")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
