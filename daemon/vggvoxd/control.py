"""The control socket: msgpack requests on a ZeroMQ ROUTER, owned by one thread.

A request is a map ``{"op": ..., ...}``; the reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Sizes are bounded twice: ZeroMQ refuses a
message over ``max_request_bytes`` (``zmq.MAXMSGSIZE``), and the msgpack
decoder refuses oversized strings, arrays and maps. Each op is an ``Op``: its
request type (``vggvox.protocol.requests``: name, fields, role) and its handler
(the table is ``Handlers.table``). The role is checked before the fields are. A
handler may defer its reply (an enrollment) by returning None and calling ``later``.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack
import zmq

from vggvox.errors import VggvoxError
from vggvox.protocol.errors import NOT_ALLOWED, RequestError, error_code, error_reply
from vggvox.protocol.message import Reply, Request, Wire, field
from vggvox.protocol.requests import REQUESTS
from vggvoxd.sockets import SocketThread

log = logging.getLogger(__name__)

__all__ = ["ControlServer", "Later", "Op", "RequestError", "Wire", "ops_table", "reply_of"]

RECEIVE_HWM = 4
"""Requests ZeroMQ may queue per client before this thread reads them."""
MAX_CONTAINERS = 4096
"""Maps and arrays one request may hold in all: a request of millions of tiny
nested maps would otherwise cost gigabytes once decoded."""

# A handler gets the request and ``later``: to answer after other requests, it
# returns None and passes ``later`` a function that the control thread calls
# (once the data is there) to make the reply, as it goes on the wire.
Later = Callable[[Callable[[], Wire]], None]

Q = TypeVar("Q", bound=Request[Any])


@dataclass(frozen=True)
class Op(Generic[Q]):
    """A control op: its request type (op name, fields, role) and its handler, which
    gets the request checked and typed, and returns the reply, or None when it
    answers through ``later``."""

    request: type[Q]
    handle: Callable[[Q, Later], Reply | None]

    @property
    def name(self) -> str:
        return self.request.op

    @property
    def role(self) -> str:
        return self.request.role

    def serve(self, wire: Wire, later: Later) -> Wire | None:
        reply = self.handle(self.request.from_wire(wire), later)
        return None if reply is None else reply.to_wire()


def ops_table(*ops: Op[Any]) -> dict[str, Op[Any]]:
    """The ops by name: each op of the protocol's ``REQUESTS`` once, and no other, so
    a request type added to the protocol without a handler (or the reverse) stops the
    daemon at start, not a client at its first call."""
    table = {op.name: op for op in ops}
    if len(table) != len(ops):
        raise ValueError("an op is registered twice")
    missing, extra = sorted(REQUESTS.keys() - table), sorted(table.keys() - REQUESTS)
    if missing or extra:
        raise ValueError(f"the daemon's ops differ from the protocol's: no handler for "
                         f"{missing}, not in vggvox.protocol.requests.REQUESTS: {extra}")
    return table


def reply_of(fn: Callable[[], Wire | None]) -> Wire | None:
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
    def __init__(self, endpoint: str, ops: Mapping[str, Op[Any]], max_bytes: int,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        # A small receive high-water mark: ZeroMQ would otherwise queue up to 1000
        # maximal requests per client (16 GiB) before this thread reads them.
        super().__init__("control", zmq.ROUTER, endpoint,
                         {zmq.MAXMSGSIZE: max_bytes, zmq.RCVHWM: RECEIVE_HWM}, on_fatal)
        self.ops = ops
        self.max_bytes = max_bytes
        self._later: queue.Queue[tuple[list[bytes], Callable[[], Wire]]] = queue.Queue()
        self.requests = 0
        self.errors = 0
        self.authorize: Callable[[str, str, str], str | None] | None = None
        """(client id, op, its role) -> None if allowed, else why not (curveauth.py)."""

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
        if op not in self.ops:
            raise RequestError(f"unknown op {op!r} (known: {sorted(self.ops)})")
        return req

    def handle(self, envelope: list[bytes], payload: bytes, client: str = "") -> Wire | None:
        """The reply to one request from ``client`` (its CURVE key, or "")."""
        self.requests += 1

        def later(make_reply: Callable[[], Wire]) -> None:
            self._later.put((envelope, make_reply))

        def serve() -> Wire | None:
            req = self.decode(payload)
            op = self.ops[req["op"]]
            refused = self.authorize(client, op.name, op.role) if self.authorize else None
            if refused:
                raise RequestError(refused, NOT_ALLOWED)
            return op.serve(req, later)

        return self.answer(serve)

    def answer(self, fn: Callable[[], Wire | None]) -> Wire | None:
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
