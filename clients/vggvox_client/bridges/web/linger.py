"""Connections answered before their body was read, drained in one thread.

A request refused early (413, 403, 503) is answered while its client may still
be sending the body (a browser's fetch sends it right after the headers).
Closed with input unread, the kernel resets the connection and the client may
never read its answer ("Failed to fetch"). So the server stops sending (FIN)
and hands the socket here: this one thread reads and drops what still comes,
at most ``max_bytes`` a connection within ``seconds``, then closes it. Lingering
this way holds none of the server's connection slots or handler threads, so
clients that send a little and then nothing (a slow-upload flood) cannot keep
the page from being served; at most ``most`` sockets linger at once, and one
more is closed at once (its client may see a reset, as before).

Threads: ``adopt`` is called by the server's handler threads and its accepting
thread; the draining thread owns the sockets it was given.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Lingering:
    sock: socket.socket
    until: float
    left: int


class Lingerer:
    def __init__(self, seconds: float, max_bytes: int, most: int = 256) -> None:
        self.seconds, self.max_bytes, self.most = seconds, max_bytes, most
        self._socks: list[_Lingering] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def adopt(self, sock: socket.socket, unread: int = -1) -> None:
        """Send FIN on ``sock`` and drain what its client still sends (``unread`` bytes
        are expected; -1: unknown). The caller may close its own handle on the socket at
        once: this keeps a duplicate of it."""
        try:
            sock.shutdown(socket.SHUT_WR)
            mine = sock.dup()
        except OSError:
            return  # gone already: nothing to drain
        mine.setblocking(False)
        left = min(unread if unread > 0 else self.max_bytes, self.max_bytes)
        with self._lock:
            if len(self._socks) >= self.most:
                mine.close()
                return
            self._socks.append(_Lingering(mine, time.monotonic() + self.seconds, left))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="web-linger",
                                                daemon=True)
                self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._socks)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                for gone in [s for s in self._socks if s.until <= now or s.left <= 0]:
                    self._close(gone)
                socks = list(self._socks)
                if not socks:
                    self._thread = None
                    return
            poller = select.poll()  # not select(): a file number may be past 1024
            for s in socks:
                poller.register(s.sock, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(200)}
            for s in socks:
                if s.sock.fileno() in ready:
                    self._read(s)

    def _read(self, s: _Lingering) -> None:
        try:
            chunk = s.sock.recv(min(s.left, 1 << 16))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            s.left -= len(chunk)
        else:  # the client is done (or gone): close now
            s.left = 0

    def _close(self, s: _Lingering) -> None:
        self._socks.remove(s)
        try:
            s.sock.close()
        except OSError:
            pass
