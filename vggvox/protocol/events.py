"""The daemon's events: typed here, a msgpack map on the wire, the same classes at both ends.

Each ZeroMQ message is multipart ``[topic, payload]``. Every payload carries
``v`` (schema version), ``seq`` (per publisher, increasing: a gap means lost
messages), ``type``, ``source``, ``time`` (wall clock, Unix seconds) and
``t_start``/``t_end`` (seconds on the source's own clock), then ``node`` (the
daemon's name, from its config: which daemon of a fleet, through a hub, said it;
an older daemon's events have none and decode with ``""``). Adding a field is
compatible; renaming or removing one needs a new ``v``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import msgpack

from vggvox.scoring import Match
from vggvox.stream.results import Result, SpeechEnded, SpeechStarted, TurnUpdate, WindowScore

SCHEMA_VERSION = 1
NODE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A daemon's ``node``: 1 to 64 letters, digits, '.', '_' or '-' (a host name fits)."""
HUB_WELCOME = b"\x00vggvox-hub"
"""The one-frame message a hub (``vggvox-client hub``) sends each subscriber first
(ZeroMQ's XPUB welcome message), so that a client knows the events come from a
fleet, and names each source with its node. A subscriber receives it only if it
subscribes to it (or to everything); no daemon sends it."""
TOPICS = ("speech.start", "speech.end", "speaker", "turn", "named", "enrollment", "status")


@dataclass(frozen=True)
class Event:
    topic: ClassVar[str] = ""
    source: str
    t_start: float
    t_end: float
    time: float = field(default_factory=time.time)
    node: str = ""
    """The publishing daemon's ``node`` (its publisher sets it on every event)."""

    def payload(self, seq: int) -> dict[str, Any]:
        body = asdict(self)
        head = {
            "v": SCHEMA_VERSION,
            "seq": seq,
            "type": self.topic,
            "source": body.pop("source"),
            "time": body.pop("time"),
            "t_start": body.pop("t_start"),
            "t_end": body.pop("t_end"),
        }
        return {**head, **body}


@dataclass(frozen=True)
class SpeechStartEvent(Event):
    topic: ClassVar[str] = "speech.start"


@dataclass(frozen=True)
class SpeechEndEvent(Event):
    topic: ClassVar[str] = "speech.end"


@dataclass(frozen=True)
class SpeakerEvent(Event):
    topic: ClassVar[str] = "speaker"
    speaker: str | None = None
    """Best enrolled speaker at or above the threshold; None for unknown."""
    score: float = 0.0
    """Score of the best enrolled speaker (whether or not above the threshold)."""
    top: list[list[Any]] = field(default_factory=list)
    """[[name, score], ...], best first."""
    model: str = ""
    captured: float = 0.0
    """Wall time when the window's last sample entered the ring buffer."""


@dataclass(frozen=True)
class TurnEvent(Event):
    """One stable label per speaker turn; the last event of a turn is its answer."""

    topic: ClassVar[str] = "turn"
    turn: int = 0
    """Increasing per source, from 1."""
    speaker: str | None = None
    """The enrolled speaker, or None."""
    unknown: str | None = None
    """For a voice that is no enrolled speaker: its cluster on this source
    (``unknown-1``, ...), the same for the same voice until it is forgotten or named;
    never reused. None when enrolled."""
    score: float = 0.0
    """Score of the turn's evidence against its speaker (else the best enrolled one)."""
    confidence: float = 0.0
    """Probability that the label is right, from the model's calibration: that
    ``speaker`` is speaking, or for an unknown voice, that nobody enrolled is.
    (A model without a calibration: the share of windows that agree.)"""
    top: list[list[Any]] = field(default_factory=list)
    """[[name, score], ...] of the turn's evidence, best first."""
    final: bool = False
    """True on the turn's last event, once it has ended."""
    windows: int = 0
    """Windows of evidence behind the label."""
    model: str = ""
    captured: float = 0.0
    """Wall time when the newest window's last sample entered the ring buffer."""


@dataclass(frozen=True)
class NamedEvent(Event):
    """An unknown voice was named and enrolled: its past turns are ``speaker``'s."""

    topic: ClassVar[str] = "named"
    unknown: str = ""
    speaker: str = ""
    turns: list[int] = field(default_factory=list)
    """The turns of this source that carried ``unknown``."""


@dataclass(frozen=True)
class EnrollmentEvent(Event):
    topic: ClassVar[str] = "enrollment"
    action: str = "added"
    """``added`` or ``removed``."""
    speaker: str = ""
    embeddings: int = 0
    speech_s: float = 0.0
    model: str = ""


@dataclass(frozen=True)
class StatusEvent(Event):
    topic: ClassVar[str] = "status"
    state: str = "running"
    """Source state: starting, running, lost, waiting, finished, stopped."""
    overflows: int = 0
    """PortAudio input overflows reported by the capture callback."""
    dropped_samples: int = 0
    """Audio overwritten in the ring buffer because the pipeline fell behind."""
    dropped_windows: int = 0
    """Windows of this source dropped (live sources only: the embedding queue was full)."""
    queue: int = 0
    """Windows waiting for the embedder."""
    dropped_events: int = 0
    """Events the daemon's own publisher queue had to drop (it never blocks the pipeline)."""
    speakers: int = 0
    abandoned: bool = False
    """On a replay's ``finished``: its client stopped sending before its last block
    (killed, say), and the daemon ended it after ``replays.ABANDON_S`` of silence."""


def replay_source(session: str, label: str = "") -> str:
    """The public name of a replay stream: its label and a hash of its session.

    The session is the client's secret (at least 32 characters: 16 random bytes in
    hex); only its hash goes out in events, so a subscriber who sees the stream's
    name cannot push audio into it or end it."""
    digest = hashlib.sha256(session.encode()).hexdigest()[:12]
    return f"replay:{label}-{digest}" if label else f"replay:{digest}"


def encode(event: Event, seq: int) -> list[bytes]:
    """The two frames of one message."""
    return [event.topic.encode(), msgpack.packb(event.payload(seq), use_bin_type=True)]


def decode(frames: list[bytes]) -> dict[str, Any]:
    """Payload of a received message, checked against its topic."""
    if len(frames) != 2:
        raise ValueError(f"expected [topic, payload], got {len(frames)} frames")
    payload = msgpack.unpackb(frames[1], raw=False, max_bin_len=1 << 20, max_str_len=1 << 20)
    if not isinstance(payload, dict) or payload.get("type") != frames[0].decode():
        raise ValueError("payload type does not match its topic")
    return payload


EVENT_TYPES: dict[str, type[Event]] = {cls.topic: cls for cls in (
    SpeechStartEvent, SpeechEndEvent, SpeakerEvent, TurnEvent, NamedEvent, EnrollmentEvent,
    StatusEvent)}
"""The event class of each topic: what ``from_wire`` builds."""


@dataclass(frozen=True)
class Received:
    """One message as a subscriber gets it: the typed event, and its place in the
    publisher's sequence (a gap in ``seq`` means messages were lost)."""

    event: Event
    seq: int
    v: int


def from_wire(frames: list[bytes]) -> Received:
    """The typed event of one message: the same classes the daemon encodes with. Fields
    a newer daemon added (compatible, same ``v``) are ignored."""
    return from_payload(decode(frames))


def from_payload(payload: dict[str, Any]) -> Received:
    """The typed event of a decoded map (``decode``'s, or one a program holds: a
    bridge's tests feed it maps by hand). Unknown fields are ignored, as above."""
    cls = EVENT_TYPES.get(payload["type"])
    if cls is None:
        raise ValueError(f"unknown event type {payload['type']!r} (known: {sorted(EVENT_TYPES)})")
    known = {f.name for f in fields(cls)}
    event = cls(**{k: v for k, v in payload.items() if k in known})
    return Received(event, int(payload.get("seq", 0)), int(payload.get("v", 0)))


def _top(top: list[Match]) -> list[list[object]]:
    return [[m.name, round(m.score, 4)] for m in top]


def to_events(source: str, r: Result, model: str, captured: float) -> list[Event]:
    """The library's recognizer results as events: scores rounded to 4 decimals on the
    wire, times in seconds on the stream's own clock."""
    if isinstance(r, WindowScore):
        return [SpeakerEvent(source, r.t_start, r.t_end, speaker=r.speaker,
                             score=round(r.score, 4), top=_top(r.top), model=model,
                             captured=captured)]
    if isinstance(r, TurnUpdate):
        return [TurnEvent(source, r.t_start, r.t_end, turn=r.turn, speaker=r.speaker,
                          unknown=r.unknown, score=round(r.score, 4),
                          confidence=round(r.confidence, 4), top=_top(r.top), final=r.final,
                          windows=r.windows, model=model, captured=captured)]
    if isinstance(r, SpeechStarted):
        return [SpeechStartEvent(source, r.t_start, r.t_end)]
    if isinstance(r, SpeechEnded):
        return [SpeechEndEvent(source, r.t_start, r.t_end)]
    return []
