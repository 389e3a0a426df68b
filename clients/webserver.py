"""The web bridge's HTTP server: a bounded ThreadingHTTPServer.

``ThreadingHTTPServer`` starts a thread per connection without limit and waits
on a slow client for ever. This one answers 503 at once, from the accepting
thread, to a connection beyond ``Limits.connections`` (no thread started);
reads a request's headers, and then its body, against a deadline (a client
that sends a byte every few seconds is cut off all the same); bounds every
write; and logs a failed connection in one line instead of a traceback.
"""

from __future__ import annotations

import io
import logging
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

_BUSY_TEXT = b"busy: too many connections, retry later\n"
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: "
        + str(len(_BUSY_TEXT)).encode() + b"\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
        + _BUSY_TEXT)


@dataclass(frozen=True)
class Limits:
    connections: int = 64
    """Connections handled at once, each in a thread (streams and uploads included)."""
    streams: int = 32
    """Event streams open at once (pages)."""
    uploads: int = 2
    """Uploads being read or decoded at once."""
    upload_bytes: int = 32 << 20
    header_s: float = 10.0
    """To send a request's line and headers."""
    body_s: float = 60.0
    """To send an upload's body."""
    io_s: float = 10.0
    """The longest wait for one read or write."""
    backlog: int = 256
    """Connections the kernel queues before they are accepted. A burst of them (most
    answered 503 at once) must queue rather than be dropped: a dropped SYN costs a
    page that comes in the middle a 1 s retransmit."""

    def fitted(self) -> Limits:
        """These limits, with the connections cut to what the open-file limit allows:
        each takes a file, and ZeroMQ and the daemon requests need some too."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = max(4, (soft - 64) // 2) if soft != resource.RLIM_INFINITY else self.connections
        if room >= self.connections:
            return self
        log.warning("open-file limit %d: serving at most %d connections at once", soft, room)
        return Limits(room, min(self.streams, max(1, room // 2)), self.uploads,
                      self.upload_bytes, self.header_s, self.body_s, self.io_s, self.backlog)


class _DeadlineReader(io.RawIOBase):
    """A socket's input that fails with TimeoutError once ``deadline()`` has passed."""

    def __init__(self, sock: socket.socket, deadline: Callable[[], float], io_s: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.io_s = io_s

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self.deadline() - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client was too slow")
        self.sock.settimeout(min(left, self.io_s))
        return self.sock.recv_into(b)


class _Writer(io.BufferedIOBase):
    """Unbuffered socket output (as StreamRequestHandler's), each write bounded by io_s."""

    def __init__(self, sock: socket.socket, io_s: float) -> None:
        self.sock = sock
        self.io_s = io_s

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.sock.settimeout(self.io_s)
        self.sock.sendall(b)
        with memoryview(b) as view:
            return view.nbytes


class BoundedHandler(BaseHTTPRequestHandler):
    """A request handler whose reads and writes are bounded (see the module)."""

    limits: Limits = Limits()
    deadline: float

    def setup(self) -> None:
        self.connection = self.request
        self.deadline = time.monotonic() + self.limits.header_s
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, lambda: self.deadline,
                                                       self.limits.io_s))
        self.wfile = _Writer(self.connection, self.limits.io_s)

    def allow(self, seconds: float) -> None:
        """Give the client ``seconds`` from now to send what comes next (a body)."""
        self.deadline = time.monotonic() + seconds


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BoundedHandler],
                 limits: Limits) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.active = 0
        self.refused = 0
        self.uploads = threading.BoundedSemaphore(limits.uploads)
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = self.active >= self.limits.connections
            if not full:
                self.active += 1
        if full:
            return self._refuse(request)
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started
            self._done()
            self._refuse(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._lock:
            self.active -= 1

    def _refuse(self, request: socket.socket) -> None:
        self.refused += 1
        try:
            request.setblocking(False)  # never wait on this client in the accepting thread
            request.send(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        log.warning("connection from %s failed: %s: %s", client_address[0],
                    type(error).__name__, error)
        log.debug("connection from %s failed", client_address[0], exc_info=True)
