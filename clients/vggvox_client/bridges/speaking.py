"""Who is speaking now, per source: the one client-side model every bridge renders.

It is fed with the daemon's typed events (``vggvox.protocol.events``: a
``Received`` from ``Connection.receive_event``, or the ``Event`` alone) and with
its replies to ``status`` and ``list``. Per source it keeps the last status
(``state``, dropped windows), who is speaking (the enrolled ``speaker``, or the
``unknown`` voice's label, with the turn's id, confidence and ``final``), and
the turns of the last ``span_s`` seconds of the source's own clock; for the
daemon, the speakers enrolled and when each was last heard, its model, and the
messages this subscriber never got (``seq`` gaps).

No sockets, no threads, no rendering: ``watch`` draws it in a terminal, ``web``
serves it as JSON, ``mqtt`` publishes it, ``webhook`` posts its final turns.
Not thread-safe: a bridge that reads it from several threads holds a lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from vggvox.protocol.events import (
    EnrollmentEvent,
    Event,
    NamedEvent,
    Received,
    SpeechEndEvent,
    StatusEvent,
    TurnEvent,
    from_payload,
)

SPEAKING_TOPICS = (TurnEvent.topic, SpeechEndEvent.topic, StatusEvent.topic)
"""The events that say who speaks on each source, and its state: what a bridge that
shows only that subscribes to (``watch``, ``mqtt``)."""
TOPICS = (*SPEAKING_TOPICS, NamedEvent.topic, EnrollmentEvent.topic)
"""Every event ``SpeakingState.apply`` reads: also a voice named, a speaker enrolled."""

SPAN_S = 60.0
"""Seconds of a source's own clock whose turns are kept."""
MAX_TURNS = 200
"""Turns kept per source, newest first, however short they are."""
MAX_SKEW_S = 1.0
"""An event's ``time`` ahead of this machine's clock by more than this is not trusted
(the daemon on another machine, with another clock): its age counts from its arrival."""


class Turn(NamedTuple):
    start: float
    end: float
    label: str
    """The speaker, or the unknown voice's label (the speaker's once it is named)."""


@dataclass
class Source:
    """One of the daemon's sources, as its events have told it."""

    name: str
    state: str | None = None
    """The last status's (running, waiting, lost, finished, stopped); None before any."""
    dropped_windows: int = 0
    talking: bool = False
    """A turn is open: from its first event to the source's ``speech.end``."""
    speaker: str = ""
    """The enrolled speaker of the open turn; empty for none."""
    unknown: str = ""
    """The open turn's unknown voice (``unknown-N``); empty for none."""
    confidence: float | None = None
    """The latest turn's confidence (kept after it ends: ``current_confidence`` is not)."""
    turn: int = 0
    """The latest turn's id (0: none yet)."""
    final: bool = False
    """Whether the latest turn event was its last (the turn has ended)."""
    now: float = 0.0
    """The source's stream time of its latest event."""
    heard: float = field(default_factory=time.monotonic)
    """When it last gave an event or was in a status reply (monotonic)."""
    turns: dict[int, Turn] = field(default_factory=dict)
    """Turn id -> its span and label, the last ``SPAN_S`` seconds' (at most ``MAX_TURNS``)."""

    @property
    def label(self) -> str:
        """Who is speaking: the speaker, the unknown voice's label, ``?`` for a turn of
        neither; empty while nobody is."""
        if not self.talking:
            return ""
        return self.speaker or self.unknown or "?"

    @property
    def current_confidence(self) -> float | None:
        return self.confidence if self.talking else None


@dataclass
class Loss:
    """Messages of the daemon's sequence this subscriber never got. Each message has a
    ``seq``, +1 per message of a daemon run: a gap is messages lost on the way (a
    slow subscriber), or of topics it did not subscribe to. A ``seq`` that goes back
    is a new daemon run, no loss."""

    last: int = 0
    missed: int = 0
    restarts: int = 0

    def see(self, seq: int) -> int:
        """Note ``seq`` (0: a message without one, ignored); the messages missed just
        before it. The first message seen, and the first of a new run, set the count
        going: what came before them was never this subscriber's to miss."""
        if seq <= 0:
            return 0
        gap = seq - self.last - 1 if self.last and seq > self.last else 0
        if seq <= self.last:
            self.restarts += 1
        self.last = seq
        self.missed += gap
        return gap


class SpeakingState:
    """The daemon's sources and speakers as this client has heard them."""

    def __init__(self, max_sources: int | None = None, span_s: float = SPAN_S,
                 max_turns: int = MAX_TURNS) -> None:
        self.max_sources, self.span_s, self.max_turns = max_sources, span_s, max_turns
        self.sources: dict[str, Source] = {}
        """By name, in the order first heard."""
        self.enrolled: dict[str, float] = {}
        """Enrolled speaker -> wall time last heard (0: not since the daemon started)."""
        self.model = ""
        self.loss = Loss()

    def source(self, name: str) -> Source:
        """The source ``name``, new if unheard; the least recently heard goes beyond
        ``max_sources`` (replays add sources)."""
        src = self.sources.get(name)
        if src is None:
            src = self.sources[name] = Source(name)
            if self.max_sources is not None and len(self.sources) > self.max_sources:
                del self.sources[min(self.sources.values(), key=lambda s: s.heard).name]
        return src

    def forget(self, name: str) -> Source | None:
        return self.sources.pop(name, None)

    def apply(self, received: Received | Event | dict[str, Any]) -> Source:
        """One event (typed, or a decoded map): its source, updated."""
        if isinstance(received, dict):
            received = from_payload(received)
        if isinstance(received, Received):
            self.loss.see(received.seq)
            event = received.event
        else:
            event = received
        src = self.source(event.source)
        src.now, src.heard = max(src.now, event.t_end or 0.0), time.monotonic()
        if isinstance(event, TurnEvent):
            self._turn(src, event)
        elif isinstance(event, SpeechEndEvent):
            src.talking, src.speaker, src.unknown = False, "", ""
        elif isinstance(event, StatusEvent):
            src.state, src.dropped_windows = event.state, event.dropped_windows
        elif isinstance(event, NamedEvent):
            self._named(src, event)
        elif isinstance(event, EnrollmentEvent):
            if event.action == "removed":
                self.enrolled.pop(event.speaker, None)
            else:
                self.enrolled.setdefault(event.speaker, 0.0)
        return src

    def _turn(self, src: Source, ev: TurnEvent) -> None:
        src.talking, src.speaker, src.unknown = True, ev.speaker or "", ev.unknown or ""
        src.confidence, src.turn, src.final = ev.confidence, ev.turn, ev.final
        src.turns[ev.turn] = Turn(ev.t_start, ev.t_end, src.label)
        if ev.speaker:
            self.enrolled[ev.speaker] = time.time()
        old = {t for t, turn in src.turns.items() if turn.end < src.now - self.span_s}
        old.update(sorted(src.turns)[:-self.max_turns])
        for t in old:
            del src.turns[t]

    def _named(self, src: Source, ev: NamedEvent) -> None:
        """An unknown voice was enrolled: its turns, and the current one, are the name's."""
        for t in ev.turns:
            if t in src.turns:
                src.turns[t] = src.turns[t]._replace(label=ev.speaker)
        if src.talking and src.unknown == ev.unknown:
            src.speaker, src.unknown = ev.speaker, ""
        self.enrolled.setdefault(ev.speaker, 0.0)

    def status_reply(self, reply: dict[str, Any]) -> None:
        """The daemon's ``status`` reply: its model, and each source's state."""
        self.model = reply.get("model", "")
        for name, s in (reply.get("sources") or {}).items():
            src = self.source(name)
            src.state, src.dropped_windows = s.get("state", "?"), s.get("dropped_windows", 0)
            src.heard = time.monotonic()

    def speakers_reply(self, reply: dict[str, Any]) -> None:
        """The daemon's ``list`` reply: who is enrolled. When each was last heard is the
        daemon's ``last_heard`` (since it started) or this model's own, the later."""
        heard = {s["name"]: s.get("last_heard") or 0.0 for s in reply.get("speakers", [])}
        self.enrolled = {n: max(self.enrolled.get(n, 0.0), heard[n]) for n in sorted(heard)}

    def forget_quiet(self, seconds: float) -> list[str]:
        """Forget the sources not heard for ``seconds`` (finished replays, sources the
        daemon no longer has); their names."""
        now = time.monotonic()
        gone = [n for n, s in self.sources.items() if now - s.heard > seconds]
        for name in gone:
            del self.sources[name]
        return gone


def born(ev_time: object, now_wall: float, now_mono: float) -> float:
    """When an event was made, on this machine's monotonic clock: from its ``time``
    (the daemon's wall clock) where that can be trusted, else from its arrival (now).
    Counting from arrival alone would let a backlog that reached a bridge late pass
    for news."""
    if not isinstance(ev_time, (int, float)) or ev_time > now_wall + MAX_SKEW_S:
        return now_mono
    return now_mono - max(0.0, now_wall - float(ev_time))
