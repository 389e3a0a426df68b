"""Talking to a running vggvoxd: control requests (REQ) and events (SUB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import zmq

from vggvox.errors import VggvoxError
from vggvoxd import config
from vggvoxd.events import decode

SYSTEM_RUNTIME = Path("/run/vggvox")


class ClientError(VggvoxError):
    """The daemon did not answer, or answered with an error."""


def default_endpoint(which: str) -> str:
    """Where a daemon on this machine listens: its config, the systemd runtime dir, or ours."""
    settings, _ = config.load(None)
    if getattr(settings.endpoints, which):
        return getattr(settings.endpoints, which)
    system = SYSTEM_RUNTIME / f"{which}.sock"
    return f"ipc://{system}" if system.exists() else settings.endpoint(which)


class Connection:
    def __init__(self, control: str | None = None, events: str | None = None,
                 timeout: float = 10.0) -> None:
        self.control = control or default_endpoint("control")
        self.events = events or default_endpoint("events")
        self.timeout = timeout
        """Default wait for a reply, in seconds."""
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        # A fresh REQ socket per request: after a timeout a REQ socket is stuck.
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.control)
            sock.send(msgpack.packb({"op": op, **fields}, use_bin_type=True))
            timeout = self.timeout if timeout is None else timeout
            if not sock.poll(int(timeout * 1000)):
                raise ClientError(f"no answer from vggvoxd at {self.control} within {timeout:g} s "
                                  "(is it running? see --control)")
            reply = msgpack.unpackb(sock.recv(), raw=False)
        finally:
            sock.close()
        if not reply.get("ok"):
            raise ClientError(f"vggvoxd refused {op!r}: {reply.get('error', reply)}")
        return reply

    def subscribe(self, topics: list[str] | None = None) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.events)
        for t in topics or [""]:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        return sock

    @staticmethod
    def receive(sock: zmq.Socket, timeout: float) -> dict[str, Any] | None:
        if not sock.poll(int(timeout * 1000)):
            return None
        return decode(sock.recv_multipart())
