"""The web bridge's one subscription to the daemon's events, fanned out to the pages.

However many pages are open, the bridge holds one SUB socket (one connection to
the daemon, one thread): each page's event stream reads a bounded queue of its
own, and a page that falls behind is dropped (its browser reconnects and
reloads the state) rather than let its queue grow. The hub also keeps what a
page needs to draw at once, the bridges' shared ``SpeakingState``: per source its
state, current speaker and the last 60 s of turns (``snapshot``).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import zmq

from vggvox.errors import VggvoxError
from vggvox.protocol.events import Received
from vggvox.protocol.requests import ListRequest, StatusRequest
from vggvox_client.bridges.speaking import TOPICS, Source, SpeakingState
from vggvox_client.connection import Connection

log = logging.getLogger(__name__)

MAX_SOURCES = 64
"""Sources kept (the least recently heard goes first): replays add sources. Per source,
the model keeps the turns of the timeline the page shows (``speaking.SPAN_S``)."""
QUEUE = 256
"""Events a page's stream may have waiting before it is dropped."""


@dataclass(eq=False)  # each stream is its own: kept in a set by identity
class Stream:
    """One page's event stream: what the hub has sent it, not yet written."""

    events: queue.Queue[dict[str, Any]] = field(default_factory=lambda: queue.Queue(QUEUE))
    lagging: bool = False


def source_json(s: Source) -> dict[str, Any]:
    """One source as ``/state`` gives it (and as the page keeps it)."""
    return {"state": s.state or "running", "speaker": s.label,
            "confidence": s.current_confidence, "now": s.now,
            "turns": {str(k): list(t) for k, t in s.turns.items()}}


class EventHub:
    def __init__(self, conn: Connection, max_streams: int, stop: threading.Event) -> None:
        self.conn = conn
        self.max_streams = max_streams
        self.stop = stop
        self.streams: set[Stream] = set()
        self.state = SpeakingState(max_sources=MAX_SOURCES)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="events", daemon=True)

    def start(self) -> EventHub:
        self.thread.start()
        return self

    def open(self) -> Stream | None:
        """A new page's stream, or None when ``max_streams`` are open."""
        with self.lock:
            if len(self.streams) >= self.max_streams:
                return None
            stream = Stream()
            self.streams.add(stream)
            return stream

    def close(self, stream: Stream) -> None:
        with self.lock:
            self.streams.discard(stream)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {name: source_json(s) for name, s in sorted(self.state.sources.items())}

    def publish(self, received: Received) -> None:
        """Record an event in the state and hand its map to every open stream."""
        ev = received.event.payload(received.seq)
        with self.lock:
            self.state.apply(received)
            for stream in self.streams:
                try:
                    stream.events.put_nowait(ev)
                except queue.Full:
                    stream.lagging = True

    def _run(self) -> None:
        complained = False
        while not self.stop.is_set():
            try:
                sock = self.conn.subscribe(list(TOPICS))
            except (VggvoxError, zmq.ZMQError, OSError) as e:
                # The daemon's socket refuses us, or no file is left: say so once, retry.
                if not complained:
                    log.error("cannot subscribe to vggvoxd's events: %s (retrying)", e)
                    complained = True
                self.stop.wait(5.0)
                continue
            try:
                while not self.stop.is_set():
                    ev = self.conn.receive_event(sock, 0.5)
                    if ev is not None:
                        self.publish(ev)
            except (zmq.ZMQError, ValueError, KeyError, TypeError) as e:
                log.warning("the event subscription failed (%s); subscribing again", e)
            finally:
                sock.close()


def page_state(hub: EventHub, conn: Connection) -> dict[str, Any]:
    """What the page draws at once (``/state``): the hub's sources (current speaker,
    recent turns), with the daemon's own sources and speakers."""
    sources = hub.snapshot()
    state: dict[str, Any] = {"daemon": "running", "sources": sources, "speakers": []}
    try:
        status = conn.send(StatusRequest(), timeout=2)
        state["speakers"] = conn.send(ListRequest(), timeout=2).get("speakers", [])
    except (VggvoxError, zmq.ZMQError, OSError) as e:  # ClientError; OSError: no file left
        state["daemon"] = str(e)
        return state
    for name, src in (status.get("sources") or {}).items():
        entry = sources.setdefault(name, {"speaker": "", "confidence": None, "now": 0.0,
                                          "turns": {}})
        entry["state"] = src.get("state", "running")
    return state
