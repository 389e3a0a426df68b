"""A thread that owns one bound ZeroMQ socket: ZeroMQ sockets are not thread-safe,
so each of the daemon's sockets is created, used and closed by one thread.

The thread's loop is guarded like every other stage (``guard.py``): a failing
``step`` is logged, counted and retried; one that keeps failing stops the
daemon (``on_fatal``), so that its service manager restarts it. Each turn also
sees to the socket's connections (``connlimit.py``): a flood of them is shed
instead of running the process out of files.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

import zmq

from vggvoxd.connlimit import ConnectionWatch
from vggvoxd.guard import Guard

log = logging.getLogger(__name__)

FINAL_LINGER_MS = 500
"""How long a closing socket may still deliver what it has queued, at most."""


class SocketThread(ABC):
    def __init__(self, name: str, kind: int, endpoint: str, options: dict[int, int | bytes],
                 on_fatal: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.kind = kind
        self.endpoint = endpoint
        self.options: dict[int, int | bytes] = {zmq.LINGER: 0, **options}
        """Set on the socket before it binds (the daemon adds CURVE's here)."""
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._bound = threading.Event()
        self._error: Exception | None = None
        self._stop = threading.Event()
        self.guard = Guard(name, on_fatal or log.critical)
        self.connections = ConnectionWatch(name)
        """Its clients' connections, capped (``status``: connections)."""

    def start(self, timeout: float = 5.0) -> None:
        """Start the thread; raises RuntimeError if the endpoint cannot be bound."""
        self._thread.start()
        if not self._bound.wait(timeout) or self._error is not None:
            raise RuntimeError(f"cannot bind {self.name} endpoint {self.endpoint}: {self._error}")

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(self.kind)
        for option, value in self.options.items():
            sock.setsockopt(option, value)
        try:
            sock.bind(self.endpoint)
            self.connections.attach(sock, self.endpoint)
        except zmq.ZMQError as e:
            self._error = e
            sock.close()
            return
        finally:
            self._bound.set()
        log.info("%s on %s", self.name, self.endpoint)
        try:
            self.guard.run(lambda: self._turn(sock), self._stop)
            self.finish(sock)
        finally:
            try:
                self.connections.close(sock)
            finally:
                sock.close()

    def finish(self, sock: zmq.Socket) -> None:
        """Before the socket closes on a stop: send what is still due. The last events
        and replies (``finished``, ``stopped``, an answer to a pending request) are
        worth a short linger; a peer that does not read cannot hold the exit longer."""
        sock.setsockopt(zmq.LINGER, FINAL_LINGER_MS)

    def _turn(self, sock: zmq.Socket) -> bool | None:
        self.connections.check(sock)
        return self.step(sock)

    def poll(self, sock: zmq.Socket, timeout_ms: int) -> bool:
        """``sock.poll`` for a step to wait with: it sees to connections while it waits,
        so that a flood is shed at once."""
        return self.connections.poll(sock, timeout_ms)

    def alive(self) -> bool:
        return self._thread.is_alive() and not self.guard.failed

    def healthy(self) -> bool:
        """A socket thread waits on its socket by design: alive is healthy."""
        return self.alive()

    @abstractmethod
    def step(self, sock: zmq.Socket) -> bool | None:
        """One turn of the loop (it should return within ~100 ms, so that a stop is
        seen): True when it did work, None when there was none, False when the thread
        is done (see ``Guard.run``)."""
