"""Stage 7: the ZeroMQ PUB socket, owned by one thread (sockets are not thread-safe).

Any thread may ``publish``: the event goes into a bounded queue and the call
returns at once; when the queue is full the oldest event is dropped and
counted. ZeroMQ's high-water mark then drops messages for a subscriber that
is slow or gone, so no subscriber can ever hold up the pipeline.

``publish`` is the function the daemon hands to whoever publishes (each stream's
sink, the ops, the run loop): nothing stands between them and this queue.
Every event leaves with this daemon's ``node`` (set here, in one place, so that
no publisher can forget it). Owners: the events thread owns the socket and
``seq``; ``dropped`` is changed under its lock, by a publishing thread (queue
full) or the events thread.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable

import zmq

from vggvox.protocol.events import Event, encode
from vggvoxd.sockets import SocketThread


class Publisher(SocketThread):
    def __init__(self, endpoint: str, hwm: int = 1000, backlog: int = 10000,
                 on_fatal: Callable[[str], None] | None = None, node: str = "") -> None:
        super().__init__("events", zmq.PUB, endpoint, {zmq.SNDHWM: hwm}, on_fatal)
        self.node = node
        """Set on every event (its ``node``), whoever made it: the config's ``node``."""
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=backlog)
        self.seq = 0
        self.dropped = 0
        """Events lost in this queue or at the socket (``status``: dropped_events)."""
        self._count = threading.Lock()  # publish() runs in many threads

    def publish(self, event: Event) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    with self._count:
                        self.dropped += 1
                except queue.Empty:
                    pass

    def stop(self) -> None:
        self._queue.put(None)
        self.join()

    def step(self, sock: zmq.Socket) -> bool | None:
        try:
            # A short wait: each turn also sees to a connection flood (connlimit.py),
            # which at a low file limit must be shed within milliseconds.
            event = self._queue.get(timeout=0.01)
        except queue.Empty:
            return None
        if event is None:
            return False
        self.seq += 1
        if event.node != self.node:
            event = dataclasses.replace(event, node=self.node)
        try:
            sock.send_multipart(encode(event, self.seq), flags=zmq.NOBLOCK)
        except zmq.Again:  # PUB drops at the high-water mark; belt and braces
            with self._count:
                self.dropped += 1
        except Exception:  # the guard logs it; the event is lost, and counted
            with self._count:
                self.dropped += 1
            raise
        return True
