"""The control socket: msgpack requests on a ZeroMQ ROUTER, owned by one thread.

A request is a map ``{"op": ..., ...}``; the reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Sizes are bounded twice: ZeroMQ refuses a
message over ``max_request_bytes`` (``zmq.MAXMSGSIZE``), and the msgpack
decoder refuses oversized strings, arrays and maps. A handler may defer its
reply (live enrollment) by returning None and calling ``later``.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from vggvox.errors import VggvoxError
from vggvox.protocol.errors import RequestError, error_code, error_reply
from vggvoxd.sockets import SocketThread

log = logging.getLogger(__name__)

RECEIVE_HWM = 4
"""Requests ZeroMQ may queue per client before this thread reads them."""
MAX_CONTAINERS = 4096
"""Maps and arrays one request may hold in all: a request of millions of tiny
nested maps would otherwise cost gigabytes once decoded."""

Reply = dict[str, Any]
# A handler gets the request and ``later``: to answer after other requests,
# it returns None and passes ``later`` a function that the control thread
# calls (once the data is there) to make the reply.
Later = Callable[[Callable[[], Reply]], None]
Handler = Callable[[dict[str, Any], Later], Reply | None]


def field(req: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """A typed request field, or a RequestError naming it."""
    if key not in req:
        if default is ...:
            raise RequestError(f"missing field '{key}'")
        return default
    value = req[key]
    if isinstance(value, bool) and kind is not bool:
        raise RequestError(f"field '{key}' must be {kind}, got bool")
    if not isinstance(value, kind):
        raise RequestError(f"field '{key}' must be {kind}, got {type(value).__name__}")
    return value


def reply_of(fn: Callable[[], Reply | None]) -> Reply | None:
    """Run a handler (or a deferred part of one): any failure becomes an error reply,
    never a crash; a bug is logged with its traceback."""
    try:
        return fn()
    except VggvoxError as e:
        return error_reply(str(e), error_code(e))
    except Exception as e:  # a bug in a handler must not take the daemon down
        log.exception("control request failed")
        return error_reply(f"internal error: {type(e).__name__}: {e}", error_code(e))


def client_id(frame: zmq.Frame) -> str:
    """Who sent a message: under CURVE, ZAP names the client by its public key (Z85);
    without, there is no name."""
    try:
        return str(frame.get("User-Id") or "")
    except zmq.ZMQError:  # the NULL mechanism sets no User-Id
        return ""


class ControlServer(SocketThread):
    def __init__(self, endpoint: str, handlers: dict[str, Handler], max_bytes: int,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        # A small receive high-water mark: ZeroMQ would otherwise queue up to 1000
        # maximal requests per client (16 GiB) before this thread reads them.
        super().__init__("control", zmq.ROUTER, endpoint,
                         {zmq.MAXMSGSIZE: max_bytes, zmq.RCVHWM: RECEIVE_HWM}, on_fatal)
        self.handlers = handlers
        self.max_bytes = max_bytes
        self._later: queue.Queue[tuple[list[bytes], Callable[[], Reply]]] = queue.Queue()
        self.requests = 0
        self.errors = 0
        self.authorize: Callable[[str, str], str | None] | None = None
        """(client id, op) -> None if allowed, else why not (CURVE roles; see curve.py)."""

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def idle(self) -> bool:
        """No deferred reply waits to be sent."""
        return self._later.empty()

    def finish(self, sock: zmq.Socket) -> None:
        """On a stop, answer what is already answerable (an abandoned recording's error,
        say) before the socket closes."""
        super().finish(sock)
        self._send_later(sock)

    def _send_later(self, sock: zmq.Socket) -> bool:
        did = False
        while not self._later.empty():
            did = True
            envelope, make_reply = self._later.get_nowait()
            reply = self.answer(make_reply)
            sock.send_multipart([*envelope, msgpack.packb(reply)])
        return did

    def decode(self, payload: bytes) -> dict[str, Any]:
        containers = 0

        def count(obj: Any) -> Any:  # called for each map and array as it is decoded
            nonlocal containers
            containers += 1
            if containers > MAX_CONTAINERS:
                raise ValueError(f"more than {MAX_CONTAINERS} maps and arrays")
            return obj

        try:
            req = msgpack.unpackb(
                payload, raw=False, strict_map_key=True,
                max_bin_len=self.max_bytes, max_str_len=1 << 16,
                max_array_len=1024, max_map_len=64, max_ext_len=0,
                object_hook=count, list_hook=count,
            )
        except (ValueError, msgpack.UnpackException, TypeError) as e:
            raise RequestError(f"request is not a valid msgpack map: {e}") from None
        if not isinstance(req, dict):
            raise RequestError(f"request must be a msgpack map, got {type(req).__name__}")
        op = field(req, "op", str)
        if op not in self.handlers:
            raise RequestError(f"unknown op {op!r} (known: {sorted(self.handlers)})")
        return req

    def handle(self, envelope: list[bytes], payload: bytes, client: str = "") -> Reply | None:
        """The reply to one request from ``client`` (its CURVE key, or "")."""
        self.requests += 1

        def later(make_reply: Callable[[], Reply]) -> None:
            self._later.put((envelope, make_reply))

        def serve() -> Reply | None:
            req = self.decode(payload)
            refused = self.authorize(client, req["op"]) if self.authorize else None
            if refused:
                raise RequestError(refused, "not_allowed")
            return self.handlers[req["op"]](req, later)

        return self.answer(serve)

    def answer(self, fn: Callable[[], Reply | None]) -> Reply | None:
        """``reply_of``, counting the requests that fail."""
        reply = reply_of(fn)
        if reply is not None and not reply.get("ok", True):
            self.errors += 1
        return reply

    def step(self, sock: zmq.Socket) -> bool | None:
        """True when it served something, None when idle (see ``Guard.run``)."""
        did = self.poll(sock, 100)  # sees to a connection flood meanwhile
        if did:
            frames = sock.recv_multipart(copy=False)
            if len(frames) >= 2:
                envelope = [f.bytes for f in frames[:-1]]
                reply = self.handle(envelope, frames[-1].bytes, client_id(frames[-1]))
                if reply is not None:
                    sock.send_multipart([*envelope, msgpack.packb(reply)])
        did = self._send_later(sock) or did
        return True if did else None
