"""A cap on client connections, so that a flood of them cannot abort the daemon.

Every connection a bound socket accepts costs one open file. When libzmq's
I/O thread accepts on an ipc endpoint and the process is out of files
(EMFILE), libzmq aborts the whole process (``ipc_listener.cpp``: EMFILE is
missing from the errors it tolerates): about 1,100 held connections did it
under a limit of 1,024 files, 242 under 256. libzmq has no limit of its own,
so each bound socket counts its connections through a socket monitor
(``EVENT_ACCEPTED`` / ``EVENT_DISCONNECTED``, which carry the connection's
fd), and the sockets of the process share one budget.

When the connections reach the cap, the socket holding the most of them
*sheds*: it unbinds, which makes libzmq close every connection accepted on
that endpoint (the flood's, and any client's: the one thing libzmq offers;
ROUTER and PUB cannot drop one peer), and its files come back at once. The
socket binds again after a pause, longer if it keeps flooding, and keeps the
socket file's mode and group (``security.group``). Clients reconnect by
themselves (ZeroMQ) or on their next request. One WARNING per episode.

The cap leaves room twice: ``RESERVE`` files for the daemon's own (store,
model, audio, replays) and ``METRICS_FILES`` for the metrics endpoint's
connections (``prometheus_http.py``: bounded on its own, and never counted here),
and half of the rest for the connections accepted between the cap being reached
and the socket's thread unbinding (libzmq keeps accepting meanwhile; one local
process connects ~50 per ms).
"""

from __future__ import annotations

import logging
import os
import resource
import struct
import threading
import time
from dataclasses import dataclass

import zmq

from vggvoxd.lock import ipc_path
from vggvoxd.prometheus_http import FILES as METRICS_FILES

log = logging.getLogger(__name__)

RESERVE = 128
"""Open files kept for the daemon's own use, out of the soft limit."""
MIN_CAP = 4
MAX_CAP = 8192
"""Connections in all, at most, whatever the limit: each costs ~28 KB (8,192: ~230 MB)."""
PAUSE_S = 1.0
"""First pause before a shed socket binds again; it doubles while floods go on."""
MAX_PAUSE_S = 10.0
QUIET_S = 30.0
"""Bound this long without shedding: the episode is over (next flood warns again)."""
EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


def open_files() -> int:
    """File descriptors open in this process now (0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def cap_for(soft: int, in_use: int) -> int:
    """Connections allowed in all, under a soft limit of ``soft`` with ``in_use`` open."""
    if soft == resource.RLIM_INFINITY:
        return MAX_CAP
    return min(MAX_CAP, max(MIN_CAP, (soft - in_use - RESERVE - METRICS_FILES) // 2))


class Budget:
    """The connections of every bound socket of the process: they share its files."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[object, int] = {}
        """Connections open now, by socket (its ConnectionWatch)."""
        self._cap: int | None = None
        self.limit = 0
        """The soft limit of open files the cap was derived from."""

    @property
    def cap(self) -> int:
        """Derived at first use (the first bind), after main raised the limit."""
        with self._lock:
            if self._cap is None:
                self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                self._cap = cap_for(self.limit, open_files())
                log.info("connections: at most %d in all (open-files limit %s)",
                         self._cap, "unlimited" if self.limit == resource.RLIM_INFINITY
                         else self.limit)
            return self._cap

    def report(self, key: object, count: int) -> None:
        with self._lock:
            self._open[key] = count

    def forget(self, key: object) -> None:
        with self._lock:
            self._open.pop(key, None)

    def over(self, key: object) -> bool:
        """At the cap, and ``key`` holds the most connections: it should shed."""
        cap = self.cap
        with self._lock:
            mine = self._open.get(key, 0)
            return (mine > 0 and sum(self._open.values()) >= cap
                    and mine == max(self._open.values()))


BUDGET = Budget()


@dataclass
class SocketFile:
    """An ipc socket file's mode and group, to give back to the file a bind makes anew."""

    mode: int
    gid: int


class ConnectionWatch:
    """One bound socket's connections; used only by the thread that owns the socket."""

    def __init__(self, name: str, budget: Budget = BUDGET) -> None:
        self.name = name
        self.budget = budget
        self.fds: set[int] = set()
        """The connections open now (their fds, from the monitor's events)."""
        self.sheds = 0
        """Times this socket dropped all its connections at the cap."""
        self.endpoint = ""
        self.monitor: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._rebind_at: float | None = None
        """When to bind again; None while bound."""
        self._pause = PAUSE_S
        self._episode_end = 0.0
        self._file: SocketFile | None = None

    def attach(self, sock: zmq.Socket, endpoint: str) -> None:
        """Start counting, right after ``sock`` bound ``endpoint``."""
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
        # A tcp port chosen by the system ("*"): bind that same port again after a shed.
        self.endpoint = last.decode() if isinstance(last, bytes) and last else endpoint
        self.monitor = sock.get_monitor_socket(EVENTS)
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self.monitor, zmq.POLLIN)
        _ = self.budget.cap

    def close(self, sock: zmq.Socket) -> None:
        if self.monitor is not None:
            try:
                sock.disable_monitor()
            finally:
                self.monitor.close()
                self.monitor = None
        self.budget.forget(self)

    @property
    def accepting(self) -> bool:
        return self._rebind_at is None

    def health(self) -> dict[str, object]:
        return {"open": len(self.fds), "cap": self.budget.cap, "accepting": self.accepting,
                "sheds": self.sheds}

    def poll(self, sock: zmq.Socket, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for a message on ``sock``, seeing to connections
        meanwhile, so that a flood is met within a millisecond or so, not a loop turn
        later: True when a message is there."""
        if self.monitor is None:
            return bool(sock.poll(timeout_ms))
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self.check(sock)
            wait = deadline - time.monotonic()
            if self._rebind_at is not None:
                wait = min(wait, self._rebind_at - time.monotonic())
            ready = dict(self._poller.poll(max(0, round(wait * 1000))))
            if sock in ready or time.monotonic() >= deadline:
                self.check(sock)
                return sock in ready

    def check(self, sock: zmq.Socket) -> None:
        """Take in the monitor's events; shed at the cap; bind again when it is time."""
        if self.monitor is None:
            return
        self._drain()
        self.budget.report(self, len(self.fds))
        now = time.monotonic()
        if self._rebind_at is None and self.budget.over(self):
            self._shed(sock, now)
        elif self._rebind_at is not None and now >= self._rebind_at:
            self._rebind(sock, now)

    def _drain(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2 or len(frames[0]) != 6:
                continue
            event, fd = struct.unpack("=hi", frames[0])
            if self._rebind_at is not None:
                continue  # unbound: these are of connections the unbind closed
            if event == zmq.EVENT_ACCEPTED:
                self.fds.add(fd)
            elif event == zmq.EVENT_DISCONNECTED:
                self.fds.discard(fd)

    def _shed(self, sock: zmq.Socket, now: float) -> None:
        count, cap = len(self.fds), self.budget.cap
        self._file = self._stat()
        sock.unbind(self.endpoint)  # libzmq closes every connection accepted here
        self.fds.clear()
        self.budget.report(self, 0)
        self.sheds += 1
        if now >= self._episode_end:  # a new episode: say so, once
            self._pause = PAUSE_S
            log.warning("%s: %d connections reached the cap of %d (open-files limit %s): "
                        "closed them all; new ones are taken again in %.0f s (raise "
                        "LimitNOFILE for more)", self.name, count, cap, self.budget.limit,
                        self._pause)
        else:
            self._pause = min(2 * self._pause, MAX_PAUSE_S)
            log.debug("%s: flooded again; pausing %.0f s", self.name, self._pause)
        self._rebind_at = now + self._pause
        self._episode_end = self._rebind_at + QUIET_S

    def _rebind(self, sock: zmq.Socket, now: float) -> None:
        self._drain()  # the events of the closed connections, now stale
        self.fds.clear()
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as e:  # out of files, say: try again later, without a crash
            self._rebind_at = now + self._pause
            log.warning("%s: cannot bind %s again (%s); next try in %.0f s", self.name,
                        self.endpoint, e, self._pause)
            return
        self._rebind_at = None
        self._restore()
        log.debug("%s: taking connections again on %s", self.name, self.endpoint)

    def _stat(self) -> SocketFile | None:
        path = ipc_path(self.endpoint)
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            return None
        return SocketFile(st.st_mode & 0o7777, st.st_gid) if st is not None else None

    def _restore(self) -> None:
        """A bind makes a new ipc socket file: give it the old one's mode and group."""
        path = ipc_path(self.endpoint)
        if path is None or self._file is None:
            return
        try:
            os.chown(path, -1, self._file.gid)
            os.chmod(path, self._file.mode)
        except OSError as e:
            log.error("%s: cannot restore the mode and group of %s: %s", self.name, path, e)
