"""The replies to the control requests (``requests``), typed: ``{"ok": true, ...}`` on
the wire, each key as docs/control.md lists it.

A field that is None is absent from the map (``message.present``), except in a
``list`` reply's speakers, whose ``last_heard`` and ``damaged`` are null when there
is nothing to say. Nested data that another module shapes (a room's summary, a
stage's health, the unknown voices) stays a documented map here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from vggvox.protocol.message import NUMBER, Reply, Wire, field


@dataclass(frozen=True, kw_only=True)
class EnrollReply(Reply):
    """``enroll``: what the request stored, and the speaker's totals after it."""

    speaker: str
    action: str
    """added, appended (the name was enrolled: these clips joined it) or replaced."""
    embeddings: int
    """The speaker's, in all."""
    speech_s: float
    """Net speech (after VAD) of this request's clips."""
    added: int | None = None
    """Embeddings this request added (absent from daemons before issue 20)."""
    speaker_s: float | None = None
    """The speaker's net speech in all (absent from daemons before issue 20)."""
    model: str | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(**_enrolled(wire))


def _enrolled(wire: Mapping[str, Any]) -> dict[str, Any]:
    return {"speaker": field(wire, "speaker", str), "action": field(wire, "action", str),
            "embeddings": field(wire, "embeddings", int),
            "speech_s": field(wire, "speech_s", NUMBER),
            "added": field(wire, "added", int, None),
            "speaker_s": field(wire, "speaker_s", NUMBER, None),
            "model": field(wire, "model", str, None)}


@dataclass(frozen=True, kw_only=True)
class NameReply(EnrollReply):
    """``name``: as ``enroll``, and the voice that was named."""

    unknown: str
    source: str
    """The stream it was heard on."""
    turns: list[int]
    """Its turns so far, now the speaker's."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(**_enrolled(wire), unknown=field(wire, "unknown", str),
                   source=field(wire, "source", str), turns=field(wire, "turns", list))


@dataclass(frozen=True, kw_only=True)
class CancelReply(Reply):
    """``cancel``: what became of the enrollment (``state``: cancelled, done, unknown)."""

    request: str
    state: str
    action: str | None = None
    """When done: the enrollment's action and speaker."""
    speaker: str | None = None
    error: str | None = None
    """When it had failed anyway (then ``cancelled``): its error."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(request=field(wire, "request", str), state=field(wire, "state", str),
                   action=field(wire, "action", str, None),
                   speaker=field(wire, "speaker", str, None),
                   error=field(wire, "error", str, None))


@dataclass(frozen=True, kw_only=True)
class RemoveReply(Reply):
    removed: str
    erasure: str
    """complete, or pending while another process reads the store."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(removed=field(wire, "removed", str), erasure=field(wire, "erasure", str))


@dataclass(frozen=True, kw_only=True)
class SpeakerEntry:
    """One enrolled speaker in a ``list`` reply; every key is there, null or not."""

    name: str
    embeddings: int
    seconds: float
    model: str
    updated: float
    """Unix time of its last change."""
    last_heard: float | None
    """Unix time a turn last named them since the daemon started."""
    damaged: str | None
    """Why a damaged row of theirs leaves them out of identification."""

    def to_wire(self) -> Wire:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(name=field(wire, "name", str), embeddings=field(wire, "embeddings", int),
                   seconds=field(wire, "seconds", NUMBER), model=field(wire, "model", str),
                   updated=field(wire, "updated", NUMBER),
                   last_heard=field(wire, "last_heard", (*NUMBER, type(None)), None),
                   damaged=field(wire, "damaged", (str, type(None)), None))


@dataclass(frozen=True, kw_only=True)
class ListReply(Reply):
    model: str
    """The model the daemon identifies with."""
    speakers: list[SpeakerEntry]

    def to_wire(self) -> Wire:
        return {"ok": True, "model": self.model,
                "speakers": [s.to_wire() for s in self.speakers]}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(model=field(wire, "model", str),
                   speakers=[SpeakerEntry.from_wire(s) for s in field(wire, "speakers", list)])


@dataclass(frozen=True, kw_only=True)
class StatusReply(Reply):
    """``status``: a typed top level; its nested members are maps, each as
    docs/control.md describes it. With several sources the counters are summed."""

    source: str
    state: str
    stream_s: float
    overflows: int
    dropped_samples: int
    dropped_windows: int
    dropped_events: int
    queue: int
    speakers: int
    windows: int
    embed_s: float
    model: str
    scoring: str
    """The rule in words."""
    store: str
    """The voiceprints file."""
    enroll_max_audio_s: float
    unknowns: dict[str, dict[str, Any]]
    """Per stream: each unknown voice's turns and kept speech."""
    replays: int
    sources: dict[str, dict[str, Any]]
    """Per live source: state, stream_s, overflows, dropped_samples, dropped_windows,
    scoring, room (as ``calibration`` gives it)."""
    connections: dict[str, dict[str, Any]]
    """Per socket (events, control): open, cap, accepting, sheds."""
    stages: dict[str, dict[str, Any]]
    """Per stage: state, failures, last_error, since_progress_s, and its own counters."""
    node: str = ""
    """The daemon's name, as in its events (an older daemon's reply has none: "")."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        kinds = {f.name: _STATUS_KINDS.get(f.name, dict) for f in dataclasses.fields(cls)}
        return cls(**{name: field(wire, name, kind, *_STATUS_DEFAULTS.get(name, ()))
                      for name, kind in kinds.items()})


_STATUS_KINDS: dict[str, type | tuple[type, ...]] = {
    "source": str, "state": str, "model": str, "scoring": str, "store": str, "node": str,
    "stream_s": NUMBER, "embed_s": NUMBER, "enroll_max_audio_s": NUMBER,
    **dict.fromkeys(("overflows", "dropped_samples", "dropped_windows", "dropped_events",
                     "queue", "speakers", "windows", "replays"), int)}
"""The kind of each status field that is not a map."""
_STATUS_DEFAULTS: dict[str, tuple[Any]] = {"node": ("",)}
"""The fields added since the first version, and their value when a reply lacks them."""


@dataclass(frozen=True, kw_only=True)
class ReloadReply(Reply):
    speakers: int
    """Voiceprints loaded."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(speakers=field(wire, "speakers", int))


@dataclass(frozen=True, kw_only=True)
class ReplayReply(Reply):
    accepted: int
    """Samples taken (fewer when the daemon's buffer is full: send the rest again)."""
    stream_s: float

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(accepted=field(wire, "accepted", int),
                   stream_s=field(wire, "stream_s", NUMBER))


@dataclass(frozen=True, kw_only=True)
class CalibrationReply(Reply):
    sources: dict[str, dict[str, Any]]
    """Per live source, its room: rule, adapts, shift_sd, scores, speech_s,
    enrolled_scores, heard_scores, heard_turns (docs/rooms.md)."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(sources=field(wire, "sources", dict))


@dataclass(frozen=True, kw_only=True)
class CalibrationResetReply(Reply):
    reset: list[str]
    """The sources reset."""
    sources: dict[str, dict[str, Any]]
    """As ``calibration``, after."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(reset=field(wire, "reset", list), sources=field(wire, "sources", dict))
