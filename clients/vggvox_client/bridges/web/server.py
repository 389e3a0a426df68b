"""The web bridge's HTTP server: a bounded ThreadingHTTPServer.

``ThreadingHTTPServer`` starts a thread per connection without limit and waits
on a slow client for ever. This one answers 503 at once, from the accepting
thread, to a connection beyond ``Limits.connections`` (no thread started);
reads a request's headers, and then its body, against a deadline (a client
that sends a byte every few seconds is cut off all the same); bounds every
write; answers a handler's unexpected failure 500 in one line (and logs it)
rather than dropping the connection; and logs a failed connection in one line
instead of a traceback.

**An early answer is read.** A request refused before its body is read (413,
403, 503) is answered, and then the connection lingers: the server stops
sending (FIN) and reads and drops what the client still sends, at most
``linger_bytes`` within ``linger_s``, before it closes. Closed at once with
the body unread, the kernel would reset the connection, and a client still
sending (a browser's fetch sends the body right after the headers) would get
ECONNRESET ("Failed to fetch") instead of the answer. The lingering is done by
one thread for all such connections (``linger.py``), outside the connection
cap, so that clients that send a little and then nothing cannot hold the slots.
"""

from __future__ import annotations

import dataclasses
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
from typing import IO, Any
from urllib.parse import urlsplit

from vggvox_client.bridges.web.linger import Lingerer

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
    linger_s: float = 5.0
    """After an early answer: how long the unread body is still read (and dropped)."""
    linger_bytes: int = 64 << 20
    """After an early answer: how much of the unread body is read (and dropped)."""

    def fitted(self) -> Limits:
        """These limits, with the connections cut to what the open-file limit allows:
        each takes a file, and ZeroMQ and the daemon requests need some too."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = max(4, (soft - 64) // 2) if soft != resource.RLIM_INFINITY else self.connections
        if room >= self.connections:
            return self
        log.warning("open-file limit %d: serving at most %d connections at once", soft, room)
        return dataclasses.replace(self, connections=room,
                                   streams=min(self.streams, max(1, room // 2)))


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
    unread = 0
    """The request's body bytes not read yet; -1 when its length is not known."""
    answered = False
    """Whether an answer was begun (its status line sent)."""

    def setup(self) -> None:
        self.connection = self.request
        self.deadline = time.monotonic() + self.limits.header_s
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, lambda: self.deadline,
                                                       self.limits.io_s))
        self.wfile = _Writer(self.connection, self.limits.io_s)

    def allow(self, seconds: float) -> None:
        """Give the client ``seconds`` from now to send what comes next (a body)."""
        self.deadline = time.monotonic() + seconds

    def fail(self, code: int, text: str) -> None:
        """Answer an error in one line (a subclass answers in its own format)."""
        self.send_error(code, text)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        length = (self.headers.get("Content-Length") or "").strip()
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked or (length and not length.isdigit()):
            self.unread = -1
        else:
            self.unread = int(length or 0)
        return True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.answered = True
        super().send_response(code, message)

    def handle_one_request(self) -> None:
        self.unread, self.answered = 0, False
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            raise  # the client went away or stalled: nobody to answer (handle_error logs)
        except Exception as e:  # a bug, or a failure no handler foresaw: answered, logged
            log.error("%s %s failed: %s: %s", self.command,
                      urlsplit(getattr(self, "path", "") or "").path, type(e).__name__, e)
            log.debug("the failure", exc_info=True)
            self.close_connection = True
            if not self.answered:
                self.fail(500, f"the web bridge failed ({type(e).__name__}: {e}); its log "
                               "says more")
        if self.unread:  # answered early: linger, so that the client reads the answer
            self.close_connection = True
            server: Any = self.server
            server.lingerer.adopt(self.connection, self.unread)

    def read_body(self, out: IO[bytes], size: int) -> tuple[int, str] | None:
        """Copy the request's body (``size`` bytes) to ``out`` within ``body_s``; None
        when it is all there, else the error to answer (400 cut short, 408 too slow)."""
        self.allow(self.limits.body_s)
        try:
            while size:
                chunk = self.rfile.read1(min(size, 1 << 16))
                if not chunk:
                    self.unread = 0
                    return 400, "the upload was cut short"
                out.write(chunk)
                size -= len(chunk)
                self.unread -= len(chunk)
        except TimeoutError:
            self.unread = 0  # no lingering on a client that stalls
            self.close_connection = True
            return 408, f"the upload took over {self.limits.body_s:g} s"
        return None


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
        self.lingerer = Lingerer(limits.linger_s, limits.linger_bytes)
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
            # Drained elsewhere: closed with input unread, the connection would be reset,
            # maybe before the client reads the 503.
            self.lingerer.adopt(request)
        except OSError:  # BlockingIOError: its buffer is full; it gets a reset
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        log.warning("connection from %s failed: %s: %s", client_address[0],
                    type(error).__name__, error)
        log.debug("connection from %s failed", client_address[0], exc_info=True)
