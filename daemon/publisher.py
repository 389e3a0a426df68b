"""Stage 7: the ZeroMQ PUB socket, owned by one thread (sockets are not thread-safe).

Any thread may ``publish``: the event goes into a bounded queue and the call
returns at once; when the queue is full the oldest event is dropped and
counted. ZeroMQ's high-water mark then drops messages for a subscriber that
is slow or gone, so no subscriber can ever hold up the pipeline.
"""

from __future__ import annotations

import logging
import queue
import threading

import zmq

from vggvoxd.events import Event, encode

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, endpoint: str, hwm: int = 1000, backlog: int = 10000) -> None:
        self.endpoint = endpoint
        self.hwm = hwm
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._bound = threading.Event()
        self._error: Exception | None = None
        self.seq = 0
        self.dropped = 0

    def start(self, timeout: float = 5.0) -> None:
        self._thread.start()
        if not self._bound.wait(timeout) or self._error is not None:
            raise RuntimeError(f"cannot bind events endpoint {self.endpoint}: {self._error}")

    def publish(self, event: Event) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, self.hwm)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as e:
            self._error = e
            self._bound.set()
            sock.close()
            return
        self._bound.set()
        log.info("publishing events on %s", self.endpoint)
        try:
            while (event := self._queue.get()) is not None:
                self.seq += 1
                try:
                    sock.send_multipart(encode(event, self.seq), flags=zmq.NOBLOCK)
                except zmq.Again:  # PUB drops at the high-water mark; belt and braces
                    self.dropped += 1
        finally:
            sock.close()
