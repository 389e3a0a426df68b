"""One daemon per ipc endpoint: a lock file beside each socket.

Binding an ipc endpoint that another daemon serves silently replaces its
socket file: the first daemon keeps running but nobody can reach it. So before
binding, the daemon takes an exclusive ``flock`` on ``<socket>.lock`` and
writes its PID there. A second daemon cannot take it and refuses to start,
naming the first one's PID. The kernel drops the lock when a daemon dies, even
by SIGKILL: a socket file found while holding the lock is a dead daemon's,
and is replaced. On a clean exit the socket and lock files are removed.

TCP endpoints need none of this: binding a port that is taken fails by itself.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from vggvox.errors import VggvoxError


class EndpointBusy(VggvoxError):
    """Another running daemon serves this endpoint."""


def ipc_path(endpoint: str) -> Path | None:
    return Path(endpoint[len("ipc://"):]) if endpoint.startswith("ipc://") else None


class EndpointLocks:
    def __init__(self, endpoints: list[str]) -> None:
        self.sockets = [p for p in (ipc_path(e) for e in endpoints) if p is not None]
        self._held: list[tuple[Path, int]] = []

    def acquire(self) -> None:
        """Take every lock, or raise EndpointBusy (and hold none)."""
        try:
            for sock in self.sockets:
                self._take(sock)
        except EndpointBusy:
            self.release(remove=False)
            raise

    def _take(self, sock: Path) -> None:
        lock = sock.with_name(sock.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EndpointBusy(f"another vggvoxd (pid {pid}) already serves ipc://{sock}; "
                               "stop it first, or give this one other endpoints") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._held.append((sock, fd))
        if sock.exists():
            sock.unlink()  # a dead daemon's socket: nobody holds its lock any more

    def release(self, remove: bool = True) -> None:
        """Drop the locks; with ``remove``, delete the socket and lock files (clean exit)."""
        for sock, fd in self._held:
            if remove:
                for p in (sock, sock.with_name(sock.name + ".lock")):
                    p.unlink(missing_ok=True)
            os.close(fd)
        self._held.clear()
