"""The satellites socket: a ZeroMQ ROUTER owned by one thread (``SocketThread``).

Bounded before anything is decoded: ZeroMQ refuses a message over the link's
largest (``MAXMSGSIZE``: 1 s of audio and its header) and queues at most
``RECEIVE_HWM`` per connection; the socket's connections are capped like every
socket's (``connlimit``), a CURVE handshake must finish within ``HANDSHAKE_MS``,
and ZeroMQ's own heartbeats drop a connection that stopped answering (a cable
pulled, no reset). The application's own heartbeat tells both ends the link is
down sooner and for certain: this thread acks every satellite each ``ACK_S``,
and a satellite says ``ping`` when it has no audio to send; ``Satellites.tick``
(the run loop) marks one that is silent for ``satellites.timeout_s`` ``lost``.

Under CURVE the socket is in its own ZAP domain: only keys of
``security.satellites`` connect (``curveauth``). Each message names its sender
by its key (``User-Id``), which must stay the one it joined with; a satellite
sets its own routing id (its session), and ``ROUTER_HANDOVER`` lets its new
connection take over after a reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

import numpy as np
import zmq

from vggvox.audio import SAMPLE_RATE
from vggvox.protocol import satellite as link
from vggvox.protocol.errors import RequestError
from vggvox.protocol.events import Event, StatusEvent
from vggvox.protocol.pcm import from_pcm
from vggvox.protocol.satellite import Ack, Hello, Message, Pcm, Refused, Welcome
from vggvoxd.config import Settings
from vggvoxd.control import client_id
from vggvoxd.curveauth import SATELLITE_DOMAIN, Curve
from vggvoxd.livesources import LiveSource
from vggvoxd.rooms import Rooms
from vggvoxd.satellites import (
    GAP_FILL_S,
    PACE,
    PACE_BURST_S,
    Satellite,
    Satellites,
    SatelliteSource,
)
from vggvoxd.sockets import SocketThread
from vggvoxd.sourceconfig import SOURCE_NAME
from vggvoxd.sources import AudioSource
from vggvoxd.streamthread import Stream

log = logging.getLogger(__name__)

RECEIVE_HWM = 100
"""Messages queued per satellite before this thread reads them (2 s of 20 ms frames)."""
HANDSHAKE_MS = 5000
ACK_S = 0.25
WARN_S = 10.0
"""A satellite's gaps and its audio beyond ``PACE`` are logged at most once in this
long (with the totals): a satellite whose every frame jumps must not flood the journal."""


class SatelliteServer(SocketThread):
    def __init__(self, endpoint: str, satellites: Satellites, curve: dict[int, int | bytes],
                 on_fatal: Callable[[str], None] | None = None) -> None:
        super().__init__("satellites", zmq.ROUTER, endpoint, {
            zmq.RCVHWM: RECEIVE_HWM, zmq.ROUTER_HANDOVER: 1, zmq.ROUTER_MANDATORY: 1,
            zmq.HANDSHAKE_IVL: HANDSHAKE_MS, **link.SOCKET_OPTIONS, **curve}, on_fatal)
        self.sats = satellites
        self._last_ack = 0.0
        self.refused = 0
        """Messages refused (malformed, unknown sender, a name taken)."""

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def step(self, sock: zmq.Socket) -> bool | None:
        did = None
        if self.poll(sock, 50):
            did = True
            for _ in range(RECEIVE_HWM):  # a burst (a backlog after a cut) in one turn
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if len(frames) == 2:
                    self._serve(sock, frames[0].bytes, frames[1])
        self._welcome(sock)
        now = time.monotonic()
        if now - self._last_ack >= ACK_S:
            self._last_ack = now
            with self.sats.lock:
                acks = [(s.peer, Ack(s.next)) for s in self.sats.by_name.values() if s.welcomed]
            for peer, ack in acks:
                self._send(sock, peer, ack)
        return did

    def _send(self, sock: zmq.Socket, peer: bytes, msg: Message) -> None:
        try:
            sock.send_multipart([peer, msg.encode()], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # gone, or not reading: its heartbeat times it out

    def _welcome(self, sock: zmq.Socket) -> None:
        """Welcome the satellites whose source the run loop has made since."""
        with self.sats.lock:
            due = [s for s in self.sats.by_name.values() if s.live is not None and not s.welcomed]
            for s in due:
                s.welcomed = True
        for s in due:
            self._send(sock, s.peer, Welcome(s.name, s.next))

    def _serve(self, sock: zmq.Socket, peer: bytes, frame: zmq.Frame) -> None:
        key = client_id(frame)
        try:
            msg = link.decode(frame.bytes, link.UPSTREAM)
            with self.sats.lock:
                reply = self.handle(peer, key, msg, time.monotonic())
        except RequestError as e:
            reply = Refused(str(e), retry=False)
        if isinstance(reply, Refused):
            self.refused += 1
            log.debug("satellite message refused: %s", reply.error)
        if reply is not None:
            self._send(sock, peer, reply)

    def handle(self, peer: bytes, key: str, msg: Message, now: float) -> Message | None:
        """The reply to one message (under the registry's lock), or None."""
        if isinstance(msg, Hello):
            return self._hello(peer, key, msg, now)
        sat = self.sats.by_peer.get(peer)
        if sat is None or sat.key != key:
            return Refused("unknown satellite: say hello first", retry=True)
        sat.seen = now
        if isinstance(msg, Pcm):
            sat.reported_lost = msg.lost
            if sat.live is not None:
                self._audio(sat, msg, now)
        elif isinstance(msg, link.Ping):
            sat.reported_lost = msg.lost
        elif isinstance(msg, link.Bye):
            sat.bye = True
        return None

    def _hello(self, peer: bytes, key: str, msg: Hello, now: float) -> Message | None:
        sats = self.sats
        if msg.v != link.VERSION:
            return Refused(f"this daemon speaks satellite link v{link.VERSION}, not v{msg.v}",
                           retry=False)
        if not SOURCE_NAME.fullmatch(msg.name):
            return Refused(f"--name must be 1 to 64 letters, digits, '.', '_' or '-' "
                           f"(starting with a letter or digit), got {msg.name!r}", retry=False)
        if msg.name in sats.taken:
            return Refused(f"--name {msg.name!r} is one of the daemon's own sources",
                           retry=False)
        sat = sats.by_name.get(msg.name)
        if sat is not None and sat.key != key:
            return Refused(f"--name {msg.name!r} is taken by another satellite", retry=False)
        if sat is None:
            other = sats.holder(key)
            if other is not None:
                return Refused(f"this satellite's key is joined as {other.name!r} (one name "
                               f"per key; it may join once {other.name!r} leaves: a bye, or "
                               f"{sats.settings.forget_s:g} s of silence)", retry=True)
            if len(sats.by_name) >= sats.settings.max:
                return Refused(f"too many satellites (at most {sats.settings.max})", retry=True)
            sat = sats.by_name[msg.name] = Satellite(msg.name, key, peer, msg.session,
                                                     msg.end, now)
        elif sat.session != msg.session:  # the satellite restarted: a new clock
            sat.session, sat.next = msg.session, msg.end
        if sats.by_peer.get(sat.peer) is sat:
            del sats.by_peer[sat.peer]
        sat.peer, sat.seen, sat.bye = peer, now, False
        sats.by_peer[peer] = sat
        sat.welcomed = sat.live is not None
        return Welcome(sat.name, sat.next) if sat.welcomed else None

    @staticmethod
    def _audio(sat: Satellite, msg: Pcm, now: float) -> None:
        """Write a frame at its place on the satellite's clock: a repeat is skipped, a
        gap counted (and a little silence stands in for it), audio faster than ``PACE``
        skipped and counted."""
        x = from_pcm(msg.audio, "audio")
        pos = msg.pos
        if pos + len(x) <= sat.next:
            return
        if pos < sat.next:
            x, pos = x[sat.next - pos:], sat.next
        assert sat.live is not None
        source = sat.live.stream.source
        assert isinstance(source, SatelliteSource)
        gap = pos - sat.next
        fill = min(gap, round(GAP_FILL_S * SAMPLE_RATE))
        sat.lost_samples += gap
        sat.next = pos + len(x)
        if not _paced(sat, fill + len(x), now):
            sat.throttled += len(x)
            _warn(sat, now, "%.1f s of its audio skipped in all: it came faster than it may "
                  "(%.1fx real time, after %.0f s at once)", sat.throttled / SAMPLE_RATE, PACE,
                  PACE_BURST_S)
            return
        if gap:
            _warn(sat, now, "%.2f s of audio missing (its buffer overflowed while the link was "
                  "down); %.2f s in all", gap / SAMPLE_RATE, sat.lost_samples / SAMPLE_RATE)
            source.push(np.zeros(fill, dtype=np.int16))
        source.push(x)


def _paced(sat: Satellite, samples: int, now: float) -> bool:
    """Take ``samples`` from the satellite's allowance (refilled at ``PACE`` times real
    time, up to ``PACE_BURST_S``); False when it has not that many."""
    sat.allowance = min(PACE_BURST_S * SAMPLE_RATE,
                        sat.allowance + (now - sat.paced) * PACE * SAMPLE_RATE)
    sat.paced = now
    if samples > sat.allowance:
        return False
    sat.allowance -= samples
    return True


def _warn(sat: Satellite, now: float, text: str, *args: object) -> None:
    if now - sat.warned >= WARN_S:
        sat.warned = now
        log.warning("satellite %s: " + text, sat.name, *args)


class Parts(Protocol):
    """What the satellites use of the daemon (daemon.py)."""

    settings: Settings
    curve: Curve
    rooms: Rooms
    publish: Callable[[Event], None]

    def stream(self, source: AudioSource, on_frames: Callable[[], None] | None = None,
               critical: bool = True) -> Stream: ...

    def on_state(self, live: LiveSource) -> None: ...

    def on_fatal(self, why: str) -> None: ...


def satellites(d: Parts, status: Callable[[LiveSource], StatusEvent],
               taken: Collection[str]) -> Satellites:
    """The daemon's satellites, with their socket when ``satellites.listen`` is set
    (``Satellites.start`` binds it). A satellite's stream is not critical: one that
    gives up ends only itself, as a replay's does."""
    settings = d.settings
    sats = Satellites(settings.satellites, taken,
                      lambda source: d.stream(source, critical=False), d.rooms.add,
                      d.rooms.drop,
                      d.on_state, status, d.publish, settings.status.interval_s)
    listen = settings.satellites.listen
    if listen:
        sats.server = SatelliteServer(listen, sats, d.curve.socket_options(SATELLITE_DOMAIN),
                                      d.on_fatal)
        if not d.curve.enabled and listen.startswith("tcp://"):
            # Beyond loopback the config refuses this; on loopback, say who may join.
            log.warning("satellites on %s without CURVE keys: every local user can stream "
                        "audio as a satellite (set security.server_key and "
                        "security.satellites)", listen)
    return sats
