"""Talking to a running vggvoxd: control requests (REQ) and events (SUB).

A request goes as its typed class (``vggvox.protocol.requests``): ``call`` answers
with the typed reply, ``send`` with the reply's map (what ``--json`` prints, and
the ``Client``'s replies). ``request`` sends a map spelled by hand (an op name and
fields: the tests' and benches' way to send what no client would).

With CURVE keys (``server_key``: the daemon's public ``.key``; ``key``: this
client's ``.key_secret``) both sockets are CURVE clients. A daemon that does
not know the key never answers, so a timeout then names that possibility.
For an ipc endpoint, the socket file is probed first, so that "permission
denied" and "not running" are told apart at once instead of after a timeout.
"""

from __future__ import annotations

import errno
import grp
import socket
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import zmq
import zmq.auth

from vggvox.errors import VggvoxError
from vggvox.protocol.endpoints import discover
from vggvox.protocol.errors import UNREACHABLE
from vggvox.protocol.events import HUB_WELCOME, Received, decode, from_wire
from vggvox.protocol.message import Reply, Request, Wire
from vggvox_client import fleet

R = TypeVar("R", bound=Reply)


class ClientError(VggvoxError):
    """The daemon did not answer, or answered with an error: ``code`` is the reply's
    (``bad_request``, ``busy``, ``not_found``, ``not_allowed``, ``voice_mismatch``, ...),
    or ``unreachable`` when no reply came."""

    def __init__(self, message: str, code: str = UNREACHABLE) -> None:
        super().__init__(message)
        self.code = code


def probe(endpoint: str, absent_ok: bool = False) -> None:
    """For ``ipc://PATH``: a ClientError when nothing can be reached there, saying why.
    With ``absent_ok`` (a subscriber, which may start before the daemon and is
    connected by ZeroMQ once it is up) only a refusal is an error."""
    if not endpoint.startswith("ipc://"):
        return
    path = endpoint[len("ipc://"):]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except PermissionError:
            raise ClientError(f"permission denied on {path}: vggvoxd runs, but this user may "
                              f"not use it; {_group_hint(path)}") from None
        except FileNotFoundError:
            if absent_ok:
                return
            raise ClientError(f"vggvoxd is not running: no socket at {path} "
                              "(start it, or see --control/--events)") from None
        except ConnectionRefusedError:
            if absent_ok:
                return
            raise ClientError(f"vggvoxd is not running: {path} is a stale socket") from None
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ENOTSOCK):
                raise ClientError(f"{path}: not a vggvoxd socket ({e.strerror})") from None
            raise


def _group_hint(path: str) -> str:
    """Who may: the group the socket (or, if unreadable, its folder) belongs to."""
    for p in (Path(path), Path(path).parent):
        try:
            gid = p.stat().st_gid
        except OSError:
            continue
        try:
            name = grp.getgrgid(gid).gr_name
        except KeyError:
            name = str(gid)
        return (f"ask to be added to group {name!r} (security.group), then log in again")
    return "ask its administrator for access (security.group)"


class Connection:
    def __init__(self, control: str | None = None, events: str | None = None,
                 timeout: float = 10.0, server_key: Path | None = None,
                 key: Path | None = None) -> None:
        self.control = control or discover("control")
        self.events = events or discover("events")
        self.timeout = timeout
        """Default wait for a reply, in seconds."""
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.curve = curve_options(server_key, key)

    def _socket(self, kind: int, endpoint: str) -> zmq.Socket:
        probe(endpoint, absent_ok=kind == zmq.SUB)
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for option, value in self.curve.items():
            sock.setsockopt(option, value)
        sock.connect(endpoint)
        return sock

    def call(self, message: Request[R], timeout: float | None = None) -> R:
        """Send a request; its reply, typed (a ClientError if refused or unanswered)."""
        return message.read_reply(self.send(message, timeout))

    def send(self, message: Request[Any], timeout: float | None = None) -> Wire:
        """Send a request; its reply as the daemon's map."""
        return self._exchange(message.to_wire(), timeout)

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> Wire:
        """Send ``{"op": op, **fields}``; the reply's map."""
        return self._exchange({"op": op, **fields}, timeout)

    def _exchange(self, wire: Wire, timeout: float | None) -> Wire:
        # A fresh REQ socket per request: after a timeout a REQ socket is stuck.
        sock = self._socket(zmq.REQ, self.control)
        timeout = self.timeout if timeout is None else timeout
        # Bounded, as the reply is: a server that refused this client's CURVE handshake
        # leaves the REQ socket no peer, and an unbounded send would wait for ever.
        sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        try:
            try:
                sock.send(msgpack.packb(wire, use_bin_type=True))
                sent = True
            except zmq.Again:
                sent = False
            if not sent or not sock.poll(int(timeout * 1000)):
                why = ("is it running? does it know this client's --key, and is --server-key its "
                       "key?" if self.curve else "is it running? see --control; if it uses "
                       "CURVE keys, give --server-key and --key")
                raise ClientError(f"no answer from vggvoxd at {self.control} within {timeout:g} s "
                                  f"({why})")
            reply = msgpack.unpackb(sock.recv(), raw=False)
        finally:
            sock.close()
        if not reply.get("ok"):
            raise ClientError(f"vggvoxd refused {wire['op']!r}: {reply.get('error', reply)}",
                              str(reply.get("code", "refused")))
        return dict(reply)

    def subscribe(self, topics: list[str] | None = None) -> zmq.Socket:
        sock = self._socket(zmq.SUB, self.events)
        for t in topics or [""]:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        if topics:  # a hub's welcome (all topics include it already)
            sock.setsockopt(zmq.SUBSCRIBE, HUB_WELCOME)
        return sock

    @staticmethod
    def receive(sock: zmq.Socket, timeout: float) -> dict[str, Any] | None:
        """The next message's payload as a map, or None after ``timeout`` seconds.
        Through a hub, each source is named ``NODE/SOURCE`` (``fleet.py``)."""
        frames = fleet.next_frames(sock, timeout)
        return None if frames is None else fleet.qualify_map(sock, decode(frames))

    @staticmethod
    def receive_event(sock: zmq.Socket, timeout: float) -> Received | None:
        """The next message as a typed event (``vggvox.protocol.events``), or None after
        ``timeout`` seconds; through a hub, its source named ``NODE/SOURCE``."""
        frames = fleet.next_frames(sock, timeout)
        return None if frames is None else fleet.qualify(sock, from_wire(frames))


def curve_options(server_key: Path | None, key: Path | None) -> dict[int, bytes]:
    """Socket options of a CURVE client, from the daemon's public key file and this
    client's secret key file (both or neither)."""
    if server_key is None and key is None:
        return {}
    if server_key is None or key is None:
        raise ClientError("CURVE needs both --server-key (the daemon's .key) and --key "
                          "(this client's .key_secret)")
    try:
        server_public, _ = zmq.auth.load_certificate(server_key)
        public, secret = zmq.auth.load_certificate(key)
    except (ValueError, OSError) as e:
        raise ClientError(f"cannot read a CURVE key: {e}") from None
    if secret is None:
        raise ClientError(f"--key {key}: holds no secret key (give the .key_secret file)")
    return {zmq.CURVE_SERVERKEY: server_public, zmq.CURVE_PUBLICKEY: public,
            zmq.CURVE_SECRETKEY: secret}
