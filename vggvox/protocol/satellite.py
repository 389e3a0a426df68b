"""The satellite link: a remote microphone (``vggvox-client satellite``) streaming PCM to
a daemon's ``satellites.listen`` socket (ZeroMQ DEALER -> ROUTER, CURVE).

Every message is one ZeroMQ frame, a msgpack map whose ``t`` names its kind:

    satellite -> daemon
      hello    {t, v, name, session, start, end}   (re)join; the samples it holds
      pcm      {t, pos, audio, lost}               16-bit LE mono 16 kHz from sample pos
      ping     {t, lost}                           a heartbeat while no audio flows
      bye      {t}                                 a clean exit: the source goes away
    daemon -> satellite
      welcome  {t, source, next}                   joined: send from sample ``next``
      ack      {t, next}                           a heartbeat: everything before ``next`` is in
      refused  {t, error, retry}                   not taken (retry: say hello again later)

One sample clock: ``pos``, ``start``, ``end`` and ``next`` count samples since the
satellite's capture began (its ``session``, a random token per run). A daemon that
already has part of the session's audio says where to resume (``next``); audio
the satellite no longer holds by then is lost, and both ends count it: the
satellite in ``lost`` (its total since start), the daemon as the gap in ``pos``.

``decode`` bounds every size before it builds anything (the daemon also caps the
frame's size in ZeroMQ, before it reaches Python) and checks each field's type,
naming the bad one in a ``RequestError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
import zmq

from vggvox.protocol.errors import RequestError
from vggvox.protocol.message import field, present
from vggvox.protocol.pcm import SAMPLE_RATE, check_pcm

VERSION = 1
"""The link's version, in ``hello``: a daemon refuses one it does not speak."""
MAX_FRAME_SAMPLES = SAMPLE_RATE
"""The longest ``pcm`` frame: 1 s of audio."""
MAX_MESSAGE_BYTES = 2 * MAX_FRAME_SAMPLES + 512
"""The largest message either end accepts (ZeroMQ's ``MAXMSGSIZE`` on the daemon)."""
MAX_POSITION = 1 << 62
"""Sample positions fit in a signed 64-bit integer with room to spare (292 million
years of audio)."""
SESSION_LENGTH = (16, 64)
HEARTBEAT_MS = 1000
"""ZeroMQ's own pings on the link, both ends; a peer that answers none for 3 of them is
dropped (a cable pulled, no reset)."""
SOCKET_OPTIONS: dict[int, int] = {zmq.HEARTBEAT_IVL: HEARTBEAT_MS,
                                  zmq.HEARTBEAT_TIMEOUT: 3 * HEARTBEAT_MS,
                                  zmq.MAXMSGSIZE: MAX_MESSAGE_BYTES}
"""What both ends' sockets set alike: the heartbeat and the largest message."""


class Message:
    """A satellite-link message; ``kind`` is its ``t`` on the wire."""

    kind: ClassVar[str]

    def encode(self) -> bytes:
        return msgpack.packb({"t": self.kind, **present(self)}, use_bin_type=True)

    @classmethod
    def read(cls, wire: Mapping[str, Any]) -> Any:
        msg = cls(**{f.name: field(wire, f.name, _kind(f.type))
                     for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        msg.check()
        return msg

    def check(self) -> None:
        """A RequestError naming the field whose value its type alone does not bound."""


def _kind(annotation: Any) -> type:
    return {"int": int, "str": str, "bytes": bytes, "bool": bool}[str(annotation)]


def _position(value: int, key: str) -> int:
    if not 0 <= value < MAX_POSITION:
        raise RequestError(f"field '{key}' must be a sample position (0 or more), got {value}")
    return value


@dataclass(frozen=True)
class Hello(Message):
    kind = "hello"
    v: int
    name: str
    session: str
    start: int
    """The oldest sample the satellite still holds."""
    end: int
    """The next sample it will capture."""

    def check(self) -> None:
        if not SESSION_LENGTH[0] <= len(self.session) <= SESSION_LENGTH[1] \
                or not self.session.isprintable():
            raise RequestError(f"field 'session' must be {SESSION_LENGTH[0]} to "
                               f"{SESSION_LENGTH[1]} printable characters")
        _position(self.start, "start")
        if _position(self.end, "end") < self.start:
            raise RequestError("field 'end' is before 'start'")


@dataclass(frozen=True)
class Pcm(Message):
    kind = "pcm"
    pos: int
    audio: bytes
    lost: int
    """Samples the satellite has lost since it started (its buffer overflowed while the
    link was down)."""

    def check(self) -> None:
        _position(self.pos, "pos")
        _position(self.lost, "lost")
        check_pcm(self.audio, "audio")
        if len(self.audio) > 2 * MAX_FRAME_SAMPLES:
            raise RequestError(f"field 'audio' holds more than {MAX_FRAME_SAMPLES} samples")

    @property
    def samples(self) -> int:
        return len(self.audio) // 2


@dataclass(frozen=True)
class Ping(Message):
    kind = "ping"
    lost: int


@dataclass(frozen=True)
class Bye(Message):
    kind = "bye"


@dataclass(frozen=True)
class Welcome(Message):
    kind = "welcome"
    source: str
    next: int


@dataclass(frozen=True)
class Ack(Message):
    kind = "ack"
    next: int


@dataclass(frozen=True)
class Refused(Message):
    kind = "refused"
    error: str
    retry: bool
    """Say hello again (after a back-off): the daemon restarted, or is full; False: it
    never will take this satellite as it is (a name taken, a version it does not speak)."""


UPSTREAM: dict[str, type[Message]] = {m.kind: m for m in (Hello, Pcm, Ping, Bye)}
"""What a satellite sends, by ``t``."""
DOWNSTREAM: dict[str, type[Message]] = {m.kind: m for m in (Welcome, Ack, Refused)}
"""What a daemon sends, by ``t``."""


def decode(blob: bytes, kinds: Mapping[str, type[Message]]) -> Any:
    """One message of ``kinds`` (``UPSTREAM`` or ``DOWNSTREAM``) from its bytes; a
    RequestError saying what is wrong. Sizes are bounded before anything is built."""
    if len(blob) > MAX_MESSAGE_BYTES:
        raise RequestError(f"message of {len(blob)} bytes; at most {MAX_MESSAGE_BYTES}")
    try:
        wire = msgpack.unpackb(blob, raw=False, strict_map_key=True,
                               max_bin_len=2 * MAX_FRAME_SAMPLES, max_str_len=1024,
                               max_array_len=0, max_map_len=8, max_ext_len=0)
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise RequestError(f"not a msgpack map: {e}") from None
    if not isinstance(wire, dict):
        raise RequestError(f"must be a msgpack map, got {type(wire).__name__}")
    kind = field(wire, "t", str)
    cls = kinds.get(kind)
    if cls is None:
        raise RequestError(f"unknown message {kind!r} (known: {sorted(kinds)})")
    return cls.read(wire)
