"""Satellites: remote microphones that stream to the daemon (``satellites.listen``).

Each satellite that joins becomes a live source of its own, named after it
(``vggvox-client satellite --name kitchen``): its own ring buffer, VAD, windows,
turns, unknown voices and room (``Rooms.add``; ``Rooms.drop`` saves it to the store
and forgets it when the satellite leaves, so a satellite that comes back finds its
room, and names used once cost no memory). It appears in ``status`` when it
joins, is ``lost`` when it falls silent for ``satellites.timeout_s`` and
``running`` again when it returns, and leaves ``status`` when it says bye or
stays silent for ``satellites.forget_s`` (a ``stopped`` status event then).

The link (``vggvox.protocol.satellite``) carries the satellite's sample clock:
every frame says at which sample it starts, so a gap (audio the satellite could
not hold while the link was down) is counted here (``lost_samples``) as the
satellite counts it (``reported_lost``); at most ``GAP_FILL_S`` of silence
stands in for it, so that the VAD ends the speech before the gap and no window
joins audio from both sides of it.

Threads and ownership:

- the satellites socket's thread (``satellite_server.SatelliteServer``) owns the
  ROUTER socket; it handles each message under ``Satellites.lock``: it adds a
  joining satellite (``pending``: no stream yet), updates the link fields
  (``seen``, ``next``, the counts) and writes the audio into the satellite's ring
  buffer (its source's thread, as PortAudio's callback is a microphone's);
- the run loop (``tick``) owns the streams and the states: it makes a pending
  satellite's room and stream (the store is read there, as for every room), sets
  ``running``/``lost``, forgets the gone, and publishes their status events;
- the control thread reads ``lives()`` (a copy, under the lock) for ``status``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.protocol.events import Event, StatusEvent
from vggvoxd.config import SatelliteSettings
from vggvoxd.connlimit import ConnectionWatch
from vggvoxd.guard import Guard
from vggvoxd.livesources import LiveSource
from vggvoxd.sources import AudioSource, Sink
from vggvoxd.streamthread import Stream

log = logging.getLogger(__name__)

GAP_FILL_S = 0.5
"""Silence written in place of a gap, at most: longer than the VAD's hangover."""
PACE = 1.1
"""How much faster than real time a satellite's audio may flow, sustained: its clock is
a microphone's (10% for the two clocks' drift and the network's jitter)."""
PACE_BURST_S = 10.0
"""Audio a satellite may send at once beyond that: the backlog it holds after a cut
(``--buffer-s``, 5 s by default). What comes faster is skipped and counted
(``throttled``): the live queue is shared, and one satellite flooding it would push
every other source's windows out."""


class Server(Protocol):
    """The satellites socket's thread (``satellite_server.SatelliteServer``), as the
    registry starts and stops it and ``status`` shows it."""

    name: str
    guard: Guard
    connections: ConnectionWatch

    def start(self, timeout: float = 5.0) -> None: ...

    def stop(self) -> None: ...

    def healthy(self) -> bool: ...


class SatelliteSource(AudioSource):
    """A satellite's audio, written by the satellites socket's thread. Live: it never
    waits for the pipeline (what it cannot keep up with is dropped and counted, as a
    microphone's). Not a device: its link's state is the satellite's, not silence."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._sink: Sink | None = None

    def start(self, sink: Sink) -> None:
        self._sink = sink

    def push(self, samples: np.ndarray) -> None:
        if self._sink is not None:
            self._sink(samples)

    def alive(self) -> bool:
        return self._sink is not None

    def stop(self) -> None:
        self._sink = None


@dataclass
class Satellite:
    """One satellite's link, as the socket's thread and the run loop see it (under the
    registry's lock)."""

    name: str
    key: str
    """Its CURVE public key (Z85), as ZAP names it; "" without CURVE."""
    peer: bytes
    """Its ZeroMQ routing id on the socket."""
    session: str
    next: int
    """The sample of its clock the daemon expects next."""
    seen: float
    """Monotonic time of its last message."""
    live: SatelliteLive | None = None
    """Its source, once the run loop has made it (None: pending)."""
    welcomed: bool = False
    """Told where to send from since its last hello (the socket's thread)."""
    bye: bool = False
    lost_samples: int = 0
    """Samples missing from its clock: gaps between frames."""
    reported_lost: int = 0
    """Samples the satellite says it lost (its buffer overflowed while the link was down)."""
    cuts: int = 0
    """Times its link was lost and came back."""
    joined: float = field(default_factory=time.time)
    allowance: float = PACE_BURST_S * SAMPLE_RATE
    """Samples it may send now (``PACE``): a token bucket, refilled as time passes."""
    paced: float = field(default_factory=time.monotonic)
    """Monotonic time ``allowance`` was last refilled."""
    throttled: int = 0
    """Samples skipped for coming faster than ``PACE`` allows."""
    warned: float = float("-inf")
    """Monotonic time of its last WARNING about gaps or pace (one per ``WARN_S``)."""


class SatelliteLive(LiveSource):
    """A satellite as a live source: its state follows its link (``Satellites.tick``),
    never a device's restarts."""

    def __init__(self, stream: Stream, on_state: Callable[[LiveSource], None],
                 link: Satellite) -> None:
        super().__init__(stream, on_state)
        self.link = link

    def tick(self, now: float) -> None:
        self.report_drops(now)

    def details(self) -> dict[str, object]:
        k = self.link
        return {"satellite": {"lost_samples": k.lost_samples, "reported_lost": k.reported_lost,
                              "lost_s": round(k.lost_samples / SAMPLE_RATE, 3),
                              "cuts": k.cuts, "joined": k.joined,
                              "throttled": k.throttled}}


class Satellites:
    """The satellites connected now, by name; see the module's text for who does what."""

    def __init__(self, settings: SatelliteSettings, taken: Collection[str],
                 new_stream: Callable[[AudioSource], Stream], add_room: Callable[[str], None],
                 drop_room: Callable[[str], None], on_state: Callable[[LiveSource], None],
                 status: Callable[[LiveSource], StatusEvent],
                 publish: Callable[[Event], None], interval_s: float) -> None:
        self.settings = settings
        self.taken = frozenset(taken)
        """The config's own sources: no satellite may take their names."""
        self._new_stream, self._add_room, self._drop_room = new_stream, add_room, drop_room
        self._on_state, self._status, self._publish = on_state, status, publish
        self._interval_s = interval_s
        self._last_status = 0.0
        self.lock = threading.Lock()
        self.by_name: dict[str, Satellite] = {}
        self.by_peer: dict[bytes, Satellite] = {}
        self.server: Server | None = None
        """The satellites socket's thread (``satellite_server``); None: not listening."""

    def sockets(self) -> list[Server]:
        """Its socket's thread, for ``status`` (its guard and connections), if listening."""
        return [self.server] if self.server is not None else []

    def start(self) -> None:
        if self.server is not None:
            self.server.start()

    def lives(self) -> list[LiveSource]:
        with self.lock:
            return [s.live for s in self.by_name.values() if s.live is not None]

    def holder(self, key: str) -> Satellite | None:
        """The known satellite joined with ``key`` (under the lock): one name per key at a
        time, so that one key cannot take every free slot. Without CURVE (key "") there
        is no key to tell satellites apart by."""
        if not key:
            return None
        return next((s for s in self.by_name.values() if s.key == key), None)

    # -- the run loop ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Make the pending satellites' sources, follow each link's state, forget the
        gone, and send each one's status event every ``status.interval_s``."""
        with self.lock:
            pending = [s for s in self.by_name.values() if s.live is None]
        for sat in pending:
            self._attach(sat)
        with self.lock:
            links = list(self.by_name.values())
        due = now - self._last_status >= self._interval_s
        if due:
            self._last_status = now
        for sat in links:
            live = sat.live
            if live is None:
                continue
            if sat.bye or now - sat.seen > self.settings.forget_s:
                self._forget(sat, now)
                continue
            self._follow(sat, live, now)
            live.tick(now)
            if due:
                self._publish(self._status(live))

    def _attach(self, sat: Satellite) -> None:
        self._add_room(sat.name)
        stream = self._new_stream(SatelliteSource(sat.name))
        live = SatelliteLive(stream, self._on_state, sat)
        stream.start()
        with self.lock:
            sat.live = live
        log.info("satellite %s joined (key %s)", sat.name, sat.key or "none: no CURVE")
        live.set_state("running")

    def _follow(self, sat: Satellite, live: SatelliteLive, now: float) -> None:
        silent = now - sat.seen
        if live.state == "running" and silent > self.settings.timeout_s:
            log.warning("satellite %s lost: nothing heard for %.1f s", sat.name, silent)
            live.set_state("lost")
        elif live.state == "lost" and silent <= self.settings.timeout_s:
            sat.cuts += 1
            log.info("satellite %s back: %.1f s of audio lost in all (it reports %.1f s)",
                     sat.name, sat.lost_samples / SAMPLE_RATE,
                     sat.reported_lost / SAMPLE_RATE)
            live.set_state("running")

    def _forget(self, sat: Satellite, now: float) -> None:
        with self.lock:
            if self.by_name.get(sat.name) is sat:
                del self.by_name[sat.name]
            if self.by_peer.get(sat.peer) is sat:
                del self.by_peer[sat.peer]
        live = sat.live
        assert live is not None
        log.info("satellite %s left (%s)", sat.name, "it said bye" if sat.bye
                 else f"silent for {now - sat.seen:.0f} s")
        live.stream.stop()
        live.report_drops(now, final=True)
        self._drop_room(sat.name)
        self._publish(self._status_stopped(live))

    def _status_stopped(self, live: LiveSource) -> StatusEvent:
        return dataclasses.replace(self._status(live), state="stopped")

    def stop(self) -> None:
        """At shutdown (run loop): stop the socket, then every satellite's stream."""
        if self.server is not None:
            self.server.stop()
        with self.lock:
            links = list(self.by_name.values())
            self.by_name.clear()
            self.by_peer.clear()
        for sat in links:
            if sat.live is not None:
                sat.live.stream.stop()
                self._publish(self._status_stopped(sat.live))
