"""A control message: a frozen dataclass, and the msgpack map it is on the wire.

``to_wire`` gives the map in the order of the class's fields, leaving out those that
are None (an optional key is absent, never null, unless a class says otherwise);
``from_wire`` reads one back, checking each field and naming the bad one in a
``RequestError`` (``field``). A request's map starts with its ``op``; a reply's
with ``"ok": true`` (an error reply is ``errors.error_reply``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

from vggvox.protocol.errors import RequestError

Wire = dict[str, Any]
"""A message as msgpack packs it."""

NUMBER = (int, float)


def field(wire: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
          default: Any = ...) -> Any:
    """A typed field of a received map (``default`` when absent, if given), or a
    RequestError naming it."""
    if key not in wire:
        if default is ...:
            raise RequestError(f"missing field '{key}'")
        return default
    value = wire[key]
    if isinstance(value, bool) and kind is not bool:
        raise RequestError(f"field '{key}' must be {kind}, got bool")
    if not isinstance(value, kind):
        raise RequestError(f"field '{key}' must be {kind}, got {type(value).__name__}")
    return value


def present(message: object) -> Wire:
    """A dataclass's fields in order, without those that are None."""
    return {f.name: value for f in dataclasses.fields(cast(Any, message))
            if (value := getattr(message, f.name)) is not None}


class Reply:
    """A reply that went through: ``{"ok": true, ...}``."""

    def to_wire(self) -> Wire:
        return {"ok": True, **present(self)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        raise NotImplementedError


R = TypeVar("R", bound=Reply)


class Request(Generic[R]):
    """A control request: its ``op``, the ``role`` it needs under CURVE keys
    (``requests.READER`` or ``ADMIN``) and the class of its reply."""

    op: ClassVar[str]
    role: ClassVar[str]
    reply_type: ClassVar[type[Reply]]

    def to_wire(self) -> Wire:
        return {"op": self.op, **present(self)}

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Self:
        """The request a daemon received (its ``op`` already matched); a request
        without fields has nothing to check."""
        return cls()

    def read_reply(self, wire: Mapping[str, Any]) -> R:
        """This request's reply, typed, from the map that came back."""
        return cast(R, self.reply_type.from_wire(wire))
