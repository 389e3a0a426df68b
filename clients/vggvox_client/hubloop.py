"""The hub's one thread: every socket, the forwarding and the fleet's table.

Towards each daemon, one XSUB socket (a CURVE client: the daemon's public key,
the hub's own pair, whose public half is in the daemon's ``security.readers``)
subscribed to everything; towards subscribers, one XPUB (a CURVE server: the
hub's secret key; a subscriber's key must be in the ``--subscribers`` folder).
A message from a daemon goes out unchanged (the bytes the daemon made, with its
``node``), without blocking: at a subscriber's high-water mark ZeroMQ drops it
for that subscriber alone. One XSUB per daemon, not one for all, so that the
hub knows which daemon spoke and whether its link is up (a socket monitor).

The ``status`` events (each daemon's heartbeats) are decoded on the way: they
fill the table that ``status`` on the hub's control socket (ROUTER, CURVE,
same folder) answers with. Every other op is refused with ``not_on_hub``.

Limits, before anything is decoded: ``MAXMSGSIZE`` on every socket (a daemon's
events, a subscription, a request); the handshake must finish within
``HANDSHAKE_S``; at most ``max_subscribers`` subscribers pass the handshake at
once: connections are counted (a socket monitor), and while there are more,
a handshake is left unanswered (``hubauth.py``): it times out, and ZeroMQ
retries it until a place frees up. A connection that never completes its
handshake holds a place for at most ``HANDSHAKE_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq
from zmq.utils.monitor import parse_monitor_message

from vggvox.protocol import requests
from vggvox.protocol.errors import BAD_REQUEST, error_reply
from vggvox.protocol.events import HUB_WELCOME, NODE_RE, StatusEvent
from vggvox_client.fleet import qualified

log = logging.getLogger(__name__)

EVENTS_DOMAIN = "vggvox-hub-events"
CONTROL_DOMAIN = "vggvox-hub-control"
HANDSHAKE_S = 5.0
"""A peer that has not finished its CURVE handshake by then is dropped."""
MAX_REQUEST_BYTES = requests.MAX_REQUEST_BYTES
"""A control request, at most: a daemon's own (``status`` is a few bytes, but an
``enroll`` sent here by mistake must get its clear refusal, not a dropped link)."""
MAX_SUBSCRIPTION_BYTES = 1024
"""A subscription message (a topic prefix), at most: above the CURVE handshake's own
commands (INITIATE is ~260 bytes), which the limit applies to as well."""
NOT_ON_HUB = "not_on_hub"
"""The code of an op that only a daemon can do."""
RETRY_S = 2.0
"""A link down this long is connected again by hand: libzmq itself does not, after a
failed handshake (a key the daemon does not know yet) or an oversize message."""
LINK: dict[int, Any] = {zmq.HEARTBEAT_IVL: 1000, zmq.HEARTBEAT_TIMEOUT: 3000,
                        zmq.RECONNECT_IVL: 200, zmq.RECONNECT_IVL_MAX: 2000,
                        zmq.CONNECT_TIMEOUT: 2000}
"""Towards a daemon: ZMTP heartbeats notice a dead link within ~3 s (TCP alone can take
minutes), a connect that hangs (a link down) gives up after 2 s, and reconnection
backs off from 0.2 s to 2 s."""
MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
ACCEPTED = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
"""Subscribers are counted by connection (fd): a handshake event carries no fd."""


@dataclass
class Upstream:
    """One daemon, as the hub hears it."""

    endpoint: str
    connected: bool = False
    node: str = ""
    """The ``node`` of its latest event ("" before any, or from a daemon too old to say)."""
    last_heartbeat: float = 0.0
    """Wall time of its latest ``status`` event here (0: none yet)."""
    events: int = 0
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Source -> its latest status event's state and drops."""
    down_since: float = field(default_factory=time.monotonic)
    """When its link was last seen down, or last connected again by hand (monotonic)."""

    def reply(self, now: float) -> dict[str, Any]:
        age = round(now - self.last_heartbeat, 3) if self.last_heartbeat else None
        return {"endpoint": self.endpoint, "node": self.node, "connected": self.connected,
                "last_heartbeat": self.last_heartbeat or None, "heartbeat_age_s": age,
                "events": self.events, "sources": dict(self.sources)}


@dataclass
class Counts:
    subscribers: int = 0
    """Connections to the events socket, the one in its handshake included."""
    forwarded: int = 0
    dropped: int = 0
    """Messages the events socket refused outright (libzmq's XPUB drops a slow
    subscriber's at its high-water mark silently, for it alone: those are not here,
    the subscriber sees them as a gap in ``seq``)."""
    held: int = 0
    """Handshakes left unanswered at the cap (each retried by its subscriber)."""

    fds: set[int] = field(default_factory=set)
    """The subscribers' connections (their file descriptors)."""
    holds: list[float] = field(default_factory=list)
    """When each handshake held in the last ``hold_s`` was (monotonic)."""
    hold_s: float = 0.9 * HANDSHAKE_S
    """How long a hold counts: just under the handshake limit of the socket (set with it)."""

    def count(self, fd: int, accepted: bool) -> None:
        (self.fds.add if accepted else self.fds.discard)(fd)
        self.subscribers = len(self.fds)

    def hold(self, cap: int) -> bool:
        """Whether a subscriber's handshake waits: more connections than ``cap``, the
        one asking included and those held now left out (so that subscribers arriving
        together are not all held). Called by the ZAP handler's thread (``hubauth.py``).

        A hold counts until just before its connection times out, never after, so a
        held subscriber that comes back is never let in on top."""
        now = time.monotonic()
        self.holds[:] = [t for t in self.holds if now - t < self.hold_s]
        if self.subscribers - len(self.holds) > cap:
            self.holds.append(now)
            self.held += 1
            return True
        return False


class HubLoop:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], upstream: dict[str, dict[int, Any]],
                 listen: str, control: str | None, server: dict[int, Any] | None,
                 hwm: int, max_bytes: int, counts: Counts) -> None:
        self.ctx, self.counts = ctx, counts
        self.stop = threading.Event()
        self.daemons = {ep: Upstream(ep) for ep in upstream}
        self.socks: list[zmq.Socket[bytes]] = []
        self.xsubs: dict[zmq.Socket[bytes], Upstream] = {}
        self.monitors: dict[zmq.Socket[bytes], Upstream | None] = {}
        for ep, curve in upstream.items():
            s = self._socket(zmq.XSUB, {**curve, **LINK, zmq.MAXMSGSIZE: max_bytes,
                                        zmq.RCVHWM: hwm})
            self.monitors[s.get_monitor_socket(MONITORED)] = self.daemons[ep]
            s.connect(ep)
            s.send(b"\x01")  # everything: the hub reads the heartbeats, XPUB filters
            self.xsubs[s] = self.daemons[ep]
        hard: dict[int, Any] = {zmq.HANDSHAKE_IVL: int(HANDSHAKE_S * 1000)}
        counts.hold_s = 0.9 * HANDSHAKE_S
        self.xpub = self._socket(zmq.XPUB, {
            **hard, **curve_opts(server, EVENTS_DOMAIN), zmq.SNDHWM: hwm,
            zmq.MAXMSGSIZE: MAX_SUBSCRIPTION_BYTES, zmq.XPUB_WELCOME_MSG: HUB_WELCOME})
        self.xpub_monitor = self.xpub.get_monitor_socket(ACCEPTED)
        """The subscribers' connections: counted by the ZAP handler's thread with CURVE
        (``hubauth.py``: it must see a connection before its handshake asks), else here."""
        if server is None:
            self.monitors[self.xpub_monitor] = None
        self.xpub.bind(listen)
        self.control: zmq.Socket[bytes] | None = None
        if control:
            self.control = self._socket(zmq.ROUTER, {
                **hard, **curve_opts(server, CONTROL_DOMAIN), zmq.SNDHWM: 100,
                zmq.MAXMSGSIZE: MAX_REQUEST_BYTES})
            self.control.bind(control)

    def _socket(self, kind: int, options: dict[int, Any]) -> zmq.Socket[bytes]:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        for option, value in options.items():
            s.setsockopt(option, value)
        self.socks.append(s)
        return s

    def run(self) -> None:
        poller = zmq.Poller()
        for s in [*self.xsubs, self.xpub, *self.monitors, *filter(None, [self.control])]:
            poller.register(s, zmq.POLLIN)
        try:
            while not self.stop.is_set():
                for s, _ in poller.poll(200):
                    self._ready(s)
                self._retry()
        finally:
            for s in [*self.monitors, *self.socks]:
                s.close(0)

    def _ready(self, s: zmq.Socket[bytes]) -> None:
        if s in self.xsubs:
            for _ in range(1000):  # a burst at once, then the other sockets get a turn
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    return
                self._forward(self.xsubs[s], frames)
        elif s is self.xpub:
            s.recv(zmq.NOBLOCK)  # a subscription: XPUB filters by it already
        elif s in self.monitors:
            self._monitor(s, self.monitors[s])
        elif s is self.control:
            self._request(s)

    def _retry(self) -> None:
        now = time.monotonic()
        for s, up in self.xsubs.items():
            if not up.connected and now - up.down_since > RETRY_S:
                up.down_since = now
                try:
                    s.disconnect(up.endpoint)
                except zmq.ZMQError:
                    pass  # not connected at all: libzmq gave up on it
                s.connect(up.endpoint)

    def _forward(self, up: Upstream, frames: list[bytes]) -> None:
        if len(frames) != 2:
            return  # not an event: never passed on
        try:
            self.xpub.send_multipart(frames, zmq.NOBLOCK)
            self.counts.forwarded += 1
        except zmq.Again:
            self.counts.dropped += 1
        up.events += 1
        if frames[0] == StatusEvent.topic.encode():
            self._heartbeat(up, frames[1])

    def _heartbeat(self, up: Upstream, payload: bytes) -> None:
        try:
            ev = msgpack.unpackb(payload, raw=False, max_str_len=1 << 12, max_map_len=64,
                                 max_array_len=64, max_bin_len=0)
            node, source = ev.get("node", ""), str(ev["source"])[:256]
        except (ValueError, KeyError, TypeError, AttributeError,
                msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            return
        up.node = node if isinstance(node, str) and NODE_RE.fullmatch(node) else ""
        up.last_heartbeat = time.time()
        if len(up.sources) < 256 or source in up.sources:
            up.sources[source] = {"state": ev.get("state"),
                                  "dropped_windows": ev.get("dropped_windows", 0)}

    def _monitor(self, mon: zmq.Socket[bytes], up: Upstream | None) -> None:
        event = parse_monitor_message(mon.recv_multipart())
        fd, ok = event["value"], event["event"] != zmq.EVENT_DISCONNECTED
        if up is not None:
            up.connected = ok
            up.down_since = time.monotonic()
            log.info("daemon %s %s", up.endpoint, "connected" if ok else "disconnected")
            return
        self.counts.count(fd, ok)

    def _request(self, s: zmq.Socket[bytes]) -> None:
        frames = s.recv_multipart(zmq.NOBLOCK)
        if len(frames) < 2:
            return
        try:
            req = msgpack.unpackb(frames[-1], raw=False, max_map_len=64, max_array_len=4096)
            op = req.get("op") if isinstance(req, dict) else None
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            op = None
        reply = self.answer(op)
        try:
            s.send_multipart([*frames[:-1], msgpack.packb(reply, use_bin_type=True)],
                             zmq.NOBLOCK)
        except zmq.Again:
            pass  # a client that does not read its replies loses them

    def answer(self, op: object) -> dict[str, Any]:
        if not isinstance(op, str):
            return error_reply("not a request: send a msgpack map with an 'op'", BAD_REQUEST)
        if op == "status":
            return self.status()
        if op == "list":  # the hub holds no voiceprints: nobody, and it says why
            return {"ok": True, "hub": True, "speakers": [],
                    "note": "a hub holds no voiceprints: ask a daemon"}
        return error_reply(f"{op[:40]!r} is a daemon's op: this is a hub, which forwards the "
                           "events of " + (", ".join(self.nodes()) or "its daemons")
                           + " and answers 'status'; send it to a daemon's control endpoint",
                           NOT_ON_HUB)

    def nodes(self) -> list[str]:
        return [d.node or d.endpoint for d in self.daemons.values()]

    def status(self) -> dict[str, Any]:
        now = time.time()
        sources = {qualified(d.node, name): s for d in self.daemons.values()
                   for name, s in d.sources.items()}  # as the clients name them
        c = self.counts
        return {"ok": True, "hub": True, "model": "", "sources": sources,
                "daemons": [d.reply(now) for d in self.daemons.values()],
                "subscribers": c.subscribers, "forwarded": c.forwarded, "dropped": c.dropped,
                "held": c.held}


def curve_opts(server: dict[int, Any] | None, domain: str) -> dict[int, Any]:
    """A CURVE server's options (None: no CURVE, for an ipc:// hub on one machine)."""
    if server is None:
        return {}
    return {zmq.CURVE_SERVER: 1, zmq.CURVE_SECRETKEY: server[zmq.CURVE_SECRETKEY],
            zmq.CURVE_PUBLICKEY: server[zmq.CURVE_PUBLICKEY], zmq.ZAP_DOMAIN: domain.encode()}
