"""The control requests, typed: each op's fields, the role it needs and its reply.

A request is a msgpack map ``{"op": ..., ...}``; its reply ``{"ok": true, ...}``
(``replies``), or an error reply (``errors``). Under CURVE, a client's key is an
admin's or a reader's: a reader may only look (``list``, ``status``, ``calibration``).
``from_wire`` checks what the wire can say is wrong (a missing or mistyped field, a
malformed id, PCM of an odd length), in the order the daemon always has, with the
texts the tests pin; what only the daemon knows (its limits, its sources) its
handlers check. ``REQUESTS`` is every op, by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from vggvox.protocol.errors import RequestError
from vggvox.protocol.message import NUMBER, Request, field
from vggvox.protocol.pcm import check_pcm
from vggvox.protocol.replies import (
    CalibrationReply,
    CalibrationResetReply,
    CancelReply,
    EnrollReply,
    ListReply,
    NameReply,
    ReloadReply,
    RemoveReply,
    ReplayReply,
    StatusReply,
)

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""The largest request a daemon takes by default (``endpoints.max_request_bytes``): a
client splits its audio to fit."""

READER = "reader"
ADMIN = "admin"

ID_LENGTH = (8, 64)
"""An enrollment's ``request`` id: 8 to 64 printable characters."""
SESSION_LENGTH = (32, 128)
"""A replay's ``session`` token: it is the only key to the session."""


def request_id(wire: Mapping[str, Any]) -> str | None:
    """The ``request`` field (None if absent), checked."""
    rid = wire.get("request")
    if rid is None:
        return None
    if not (isinstance(rid, str) and ID_LENGTH[0] <= len(rid) <= ID_LENGTH[1]
            and rid.isprintable()):
        raise RequestError(f"'request' must be {ID_LENGTH[0]} to {ID_LENGTH[1]} printable "
                           "characters (the client's id for this request)")
    return rid


@dataclass(frozen=True, kw_only=True)
class EnrollRequest(Request[EnrollReply]):
    """Enroll ``audio`` (clips of 16-bit PCM) or ``live`` seconds recorded on a source."""

    op = "enroll"
    role = ADMIN
    reply_type = EnrollReply
    name: str
    audio: list[bytes] | None = None
    live: float | None = None
    replace: bool = False
    force: bool = False
    """Store clips that fail the same-voice check, or a look-alike name."""
    source: str | None = None
    """With ``live``: the source to record (default the first); with ``audio``: the
    source the clips were recorded on, whose room learns from them."""
    request: str | None = None
    """The client's id for it, which a ``cancel`` names."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        name = field(wire, "name", str)
        replace = field(wire, "replace", bool, False)
        force = field(wire, "force", bool, False)
        audio = field(wire, "audio", list, None)
        live = field(wire, "live", NUMBER, None)
        rid = request_id(wire)
        if (audio is None) == (live is None):
            raise RequestError("enroll needs exactly one of 'audio' (list of PCM) or 'live'")
        if audio is not None:
            if not audio:
                raise RequestError("'audio' is empty")
            for i, clip in enumerate(audio):
                check_pcm(clip, f"audio[{i}]")  # a RequestError naming the clip
        return cls(name=name, audio=audio, live=live, replace=replace, force=force,
                   source=field(wire, "source", str, None), request=rid)


@dataclass(frozen=True, kw_only=True)
class NameRequest(Request[NameReply]):
    """Enroll an unknown voice (``unknown-N``) a stream heard under ``name``."""

    op = "name"
    role = ADMIN
    reply_type = NameReply
    unknown: str
    name: str
    replace: bool = False
    force: bool = False
    request: str | None = None
    source: str | None = None
    """The stream it was heard on: needed only if several have that label."""

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(unknown=field(wire, "unknown", str), name=field(wire, "name", str),
                   replace=field(wire, "replace", bool, False),
                   force=field(wire, "force", bool, False), request=request_id(wire),
                   source=field(wire, "source", str, None))


@dataclass(frozen=True, kw_only=True)
class CancelRequest(Request[CancelReply]):
    """Cancel the enrollment sent with id ``request``."""

    op = "cancel"
    role = ADMIN
    reply_type = CancelReply
    request: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        rid = request_id(wire)
        if rid is None:
            raise RequestError("missing field 'request' (the id the enrollment was sent with)")
        return cls(request=rid)


@dataclass(frozen=True, kw_only=True)
class RemoveRequest(Request[RemoveReply]):
    op = "remove"
    role = ADMIN
    reply_type = RemoveReply
    name: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(name=field(wire, "name", str))


@dataclass(frozen=True)
class ListRequest(Request[ListReply]):
    """The enrolled speakers."""

    op = "list"
    role = READER
    reply_type = ListReply


@dataclass(frozen=True)
class StatusRequest(Request[StatusReply]):
    op = "status"
    role = READER
    reply_type = StatusReply


@dataclass(frozen=True)
class ReloadRequest(Request[ReloadReply]):
    """Read the voiceprints (and the CURVE key folders) again."""

    op = "reload"
    role = ADMIN
    reply_type = ReloadReply


@dataclass(frozen=True, kw_only=True)
class ReplayRequest(Request[ReplayReply]):
    """A block of a replay session's audio; the first block opens the session."""

    op = "replay"
    role = ADMIN
    reply_type = ReplayReply
    session: str
    """The client's secret token: whoever holds it owns the replay."""
    label: str = ""
    """Shown in the stream's name."""
    audio: bytes = b""
    final: bool = False

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        session = field(wire, "session", str)
        low, high = SESSION_LENGTH
        if not low <= len(session) <= high or not session.isprintable():
            raise RequestError(f"'session' must be {low} to {high} printable characters: "
                               "a secret token (e.g. 16 random bytes in hex)")
        label = field(wire, "label", str, "")
        if len(label) > 64 or not label.isprintable() or " " in label:
            raise RequestError("'label' must be at most 64 printable characters, no spaces")
        audio = field(wire, "audio", bytes, b"")
        check_pcm(audio, "audio")  # a RequestError when it is not 16-bit PCM
        return cls(session=session, label=label, audio=audio,
                   final=field(wire, "final", bool, False))


@dataclass(frozen=True, kw_only=True)
class CalibrationRequest(Request[CalibrationReply]):
    """Each source's room (or ``source``'s): its rule and what it rests on."""

    op = "calibration"
    role = READER
    reply_type = CalibrationReply
    source: str | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(source=field(wire, "source", str, None))


@dataclass(frozen=True, kw_only=True)
class CalibrationResetRequest(Request[CalibrationResetReply]):
    """Back to the calibration as fitted, for every source or ``source``."""

    op = "calibration_reset"
    role = ADMIN
    reply_type = CalibrationResetReply
    source: str | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        return cls(source=field(wire, "source", str, None))


REQUESTS: dict[str, type[Request[Any]]] = {cls.op: cls for cls in (
    EnrollRequest, NameRequest, CancelRequest, RemoveRequest, ListRequest, StatusRequest,
    ReloadRequest, ReplayRequest, CalibrationRequest, CalibrationResetRequest)}
"""Every op, by name."""


def role_of(op: str) -> str:
    """The role ``op`` needs (its request class's); an op nobody defined needs an admin."""
    request = REQUESTS.get(op)
    return request.role if request is not None else ADMIN
