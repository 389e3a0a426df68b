"""Who may connect to the hub: its ZAP handler (ZeroMQ's authentication protocol, RFC 27).

A subscriber's or a control client's CURVE key must be in the ``--subscribers``
folder. While the hub has more subscribers' connections than its cap, a
subscriber's handshake is left unanswered: it times out after
``hubloop.HANDSHAKE_S`` and ZeroMQ tries again, until a place is free. A refusal
would end its tries for good (libzmq does not reconnect after a failed handshake),
and pyzmq's authenticator (a REP socket) cannot leave a request unanswered: hence
this small handler on a ROUTER socket, in a thread of its own.
"""

from __future__ import annotations

import threading

import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from vggvox_client.hubloop import Counts

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
"""Where libzmq sends its ZAP requests (one handler per context)."""


class HubAuth:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], allowed: frozenset[bytes],
                 held_domain: str, counts: Counts, cap: int) -> None:
        self.allowed, self.held_domain = allowed, held_domain.encode()
        """Z85 public keys; the domain whose handshakes wait beyond ``cap``."""
        self.counts, self.cap = counts, cap
        self._stop = threading.Event()
        self._sock = ctx.socket(zmq.ROUTER)  # bound first: no handshake may miss it
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._thread: threading.Thread | None = None

    def start(self, monitor: zmq.Socket[bytes]) -> None:
        """Answer, counting the subscribers' connections from ``monitor`` (the events
        socket's: accepted and disconnected), which this thread then owns."""
        self._thread = threading.Thread(target=self._run, args=(monitor,), name="hub-zap",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._sock.close(0)

    def _run(self, monitor: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                self._count(monitor)  # first: a connection is seen before it asks
                if self._sock in ready:
                    self._answer(self._sock.recv_multipart())
        finally:
            self._sock.close(0)
            monitor.close(0)

    def _count(self, monitor: zmq.Socket[bytes]) -> None:
        while monitor.poll(0):
            event = parse_monitor_message(monitor.recv_multipart())
            self.counts.count(event["value"], event["event"] != zmq.EVENT_DISCONNECTED)

    def _answer(self, frames: list[bytes]) -> None:
        # [routing id, b"", version, request id, domain, address, identity, mechanism, key]
        if len(frames) < 8 or frames[1] != b"":
            return
        envelope, (version, request_id, domain, _, _, mechanism, *creds) = frames[:2], frames[2:]
        key = z85.encode(creds[0]) if mechanism == b"CURVE" and creds else b""
        if key in self.allowed and domain == self.held_domain and self.counts.hold(self.cap):
            return  # unanswered: the handshake times out and is tried again
        ok = key in self.allowed
        self._sock.send_multipart([*envelope, version, request_id,
                                   b"200" if ok else b"400", b"OK" if ok else b"unknown key",
                                   key if ok else b"", b""])
