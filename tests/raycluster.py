"""A private Ray cluster on this machine for tests and benches: a head node and nodes
joining it (``ray start``), on free loopback ports, in a short temporary folder (Ray's
unix socket paths must stay short), stopped by killing the process groups it started:
``ray stop`` would stop every Ray on the machine, another test's too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgserver import free_port

RAY = Path(sys.executable).parent / "ray"
OBJECT_STORE_BYTES = 100 * 1024 * 1024
"""Each node's shared-memory object store: results of a few files, no more."""
START_TIMEOUT_S = 60


def _parent_and_group(pid: int) -> tuple[int, int] | None:
    """A live process's parent and group (None for a zombie: gone but for its parent's
    wait, or a process gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else (int(fields[1]), int(fields[2]))
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class RayCluster:
    """``with RayCluster(nodes=2) as c:`` a head and ``nodes - 1`` more, one CPU each;
    ``c.address`` is what ``--ray`` takes."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1) -> None:
        self.nodes, self.cpus = nodes, cpus_per_node
        self.tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []
        """The process group of each ``ray start``: every process of its node."""

    def _start(self, head: bool) -> None:
        ports = {"--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(),
                 "--metrics-export-port": free_port(),
                 "--runtime-env-agent-port": free_port()}
        if head:
            ports |= {"--port": self.port,
                      "--dashboard-port": free_port()}
        argv = [str(RAY), "start", *(["--head", "--include-dashboard=false"] if head
                                     else [f"--address={self.address}"]),
                f"--num-cpus={self.cpus}", f"--temp-dir={self.tmp}",
                "--node-ip-address=127.0.0.1", f"--object-store-memory={OBJECT_STORE_BYTES}",
                "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items())]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.groups.append(p.pid)
        out, _ = p.communicate(timeout=START_TIMEOUT_S)
        if p.returncode != 0:
            raise RuntimeError(f"ray start failed ({p.returncode}): {out.decode()[-2000:]}")

    def start(self) -> RayCluster:
        try:
            # Each ray start returns once its node is registered with the head's GCS.
            for i in range(self.nodes):
                self._start(head=i == 0)
        except BaseException:
            self.stop()
            raise
        return self

    def processes(self, title: str = "") -> list[int]:
        """This cluster's processes: those of its ``ray start`` process groups, and their
        children (a raylet's workers each lead a group of their own); those whose command
        line starts with ``title`` where given (a Ray worker's is ``ray::FUNCTION``)."""
        stats = {p: _parent_and_group(p) for p in map(int, filter(str.isdigit,
                                                                   os.listdir("/proc")))}
        live = {p: st for p, st in stats.items() if st is not None}
        members = {p for p, (_, group) in live.items() if group in self.groups}
        members |= {p for p, (parent, _) in live.items() if parent in members}
        return sorted(p for p in members if _cmdline(p).startswith(title))

    def stop(self) -> None:
        for pid in self.processes("ray::"):  # the workers first: they lead groups of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for g in self.groups:
            try:
                os.killpg(g, signal.SIGKILL)  # a throwaway cluster: nothing to save
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
