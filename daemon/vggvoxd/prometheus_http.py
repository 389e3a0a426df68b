"""The /metrics HTTP endpoint, bounded: a flood of its port cannot use up the daemon.

prometheus_client's own server (``http.server``'s threading server) gives every
connection a thread and an open file, with no limit and no time-out: 1,000 idle
connections held 1,011 threads and 1,022 files of a daemon limited to 1,024,
its store could no longer be opened ("unable to open database file"), and 50
client connections then aborted it (libzmq, EMFILE). This server:

- handles at most ``MAX_CONNECTIONS`` connections at once, each in a thread of its
  own; one more is accepted and closed at once (a scraper tries again next time);
- gives a request ``HEADER_TIMEOUT_S`` to send its headers and ``REQUEST_TIMEOUT_S``
  for the whole exchange, so a client that trickles bytes is cut off;
- listens with a backlog of ``BACKLOG`` (the kernel's queue, not the daemon's files);
- so holds at most ``FILES`` open files, which the connection cap of the ZeroMQ
  sockets (``connlimit.py``) keeps aside: a flood here never reaches them.

It answers ``GET /metrics`` (and ``/``) with what ``render`` returns, 404 for
another path, 405 for another method, and closes each connection after one
response (Prometheus opens a new one per scrape).

Threads: the accept thread owns the listening socket, and runs its loop under a
``Guard`` like every stage (an unexpected failure is logged, counted and retried;
``healthy`` is part of the daemon's); each connection's thread owns that
connection and serves one request (its failures end that connection only);
``render`` runs under a lock, one scrape at a time; the counters (``turned_away``
by the accept thread, ``timed_out`` by every connection's thread) change under a
lock of their own.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

from vggvoxd.guard import Guard

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 8
"""Connections served at once; beyond, one is accepted and closed at once."""
FILES = MAX_CONNECTIONS + 2
"""Open files this server may hold: its listening socket, the connections it serves,
and the one it is turning away."""
BACKLOG = 128
"""Connections the kernel may hold for the accept thread (none of them is the daemon's
file until accepted): room for a burst, which the accept thread drains quickly."""
HEADER_TIMEOUT_S = 5.0
"""A request's line and headers must arrive within this long of the connection."""
REQUEST_TIMEOUT_S = 10.0
"""The whole exchange (headers in, response out) ends within this long."""
MAX_HEADER_BYTES = 8192
WARN_EVERY_S = 60.0
"""At most one WARNING this often about connections turned away."""

Render = Callable[[], tuple[bytes, str]]
"""() -> (body, content type)"""


def response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
             head: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + (b"" if head else body)


class MetricsHTTP:
    def __init__(self, address: tuple[str, int], render: Render,
                 on_fatal: Callable[[str], None] = lambda why: None) -> None:
        self.address = address
        self.render = render
        self.guard = Guard("metrics", on_fatal)
        self._render_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._counting = threading.Lock()
        """Held to change a counter: ``+= 1`` from several threads can lose counts."""
        self.turned_away = 0
        """Connections closed at once because MAX_CONNECTIONS were being served."""
        self.timed_out = 0
        """Connections cut for not sending their request (whole) in time."""
        self._warned = -WARN_EVERY_S

    def start(self) -> None:
        """Listen (an OSError if the address cannot be had) and start accepting."""
        host, port = self.address
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # Blocking accepts (the quickest: a flood is drained as fast as it comes); stop()
        # wakes a blocked accept by shutting the listening socket down.
        self._listener = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self._thread = threading.Thread(target=self._accept, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._listener is not None:
            self._listener.close()

    def healthy(self) -> bool:
        """Not given up, and accepting (or not started, or stopped on request)."""
        return not self.guard.failed and (self._thread is None or self._thread.is_alive()
                                          or self._stop.is_set())

    def _accept(self) -> None:
        self.guard.run(self._accept_one, self._stop)

    def _accept_one(self) -> bool | None:
        """One connection handed to a thread of its own, or turned away (True); None
        when none could be accepted (idle); False once stopped."""
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except OSError as e:  # out of files, say: the next try may succeed
            if self._stop.is_set():
                return False
            self._warn(f"metrics: cannot accept a connection: {e}")
            self._stop.wait(0.1)
            return None
        if not self._slots.acquire(blocking=False):
            conn.close()
            self._turn_away()
            return True
        try:
            threading.Thread(target=self._serve, args=(conn,), name="metrics-conn",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: the scraper tries again
            conn.close()
            self._slots.release()
        return True

    def _turn_away(self) -> None:
        with self._counting:
            self.turned_away += 1
            turned_away = self.turned_away
        self._warn(f"metrics: {MAX_CONNECTIONS} connections at once: closing new ones until "
                   f"they end ({turned_away} turned away so far; at most "
                   f"{MAX_CONNECTIONS} at a time, {REQUEST_TIMEOUT_S:.0f} s each)")

    def _warn(self, text: str) -> None:
        """A WARNING, at most once per WARN_EVERY_S: a flood must not flood the log."""
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            log.warning("%s", text)

    def _serve(self, conn: socket.socket) -> None:
        try:
            start = time.monotonic()
            head = self._read_head(conn, start)
            if head is None:
                with self._counting:
                    self.timed_out += 1
                return
            conn.settimeout(max(0.01, start + REQUEST_TIMEOUT_S - time.monotonic()))
            conn.sendall(self._answer(head))
        except OSError:
            pass  # the client went away or was too slow: nothing to tell anyone
        finally:
            conn.close()
            self._slots.release()

    @staticmethod
    def _read_head(conn: socket.socket, start: float) -> bytes | None:
        """The request line and headers, or None if they do not come in time."""
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            left = start + HEADER_TIMEOUT_S - time.monotonic()
            if left <= 0 or len(data) > MAX_HEADER_BYTES:
                return None
            conn.settimeout(left)
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return response("400 Bad Request", b"bad request\n")
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return response("405 Method Not Allowed", b"only GET\n")
        if target not in ("/metrics", "/"):
            return response("404 Not Found", b"only /metrics\n")
        try:
            with self._render_lock:
                body, content_type = self.render()
        except Exception:  # a bug in a collector: logged, and the daemon goes on
            log.exception("metrics: cannot render the metrics")
            return response("500 Internal Server Error", b"cannot render the metrics\n")
        return response("200 OK", body, content_type, head=method == "HEAD")
