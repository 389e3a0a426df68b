"""Error replies: ``{"ok": false, "error": text, "code": code}``, and the codes a program
can act on."""

from __future__ import annotations

import re
from typing import Any

from vggvox.errors import VggvoxError

BAD_REQUEST = "bad_request"
"""Malformed: a missing or mistyped field, an unknown op, not a msgpack map."""
BUSY = "busy"
"""Refused for now (another enrollment records, the replays are at their cap)."""
NOT_FOUND = "not_found"
"""No such speaker, source, request or replay session."""
NOT_ALLOWED = "not_allowed"
"""This client's CURVE key may not do this (a reader asking for an admin op)."""
CANCELLED = "cancelled"
"""The enrollment was cancelled by its client."""
INTERNAL = "internal"
"""A bug in the daemon: the text says what failed."""
UNREACHABLE = "unreachable"
"""Client side only: no reply came (the daemon is down, or does not know this key)."""
STORE = "store"
"""The voiceprint store failed (``vggvox.errors.StoreError``, named by ``error_code``)."""
STORE_UNAVAILABLE = "store_unavailable"
"""The store's server cannot be reached (``vggvox.errors.StoreUnavailable``): nothing
was written; the daemon goes on deciding from the voiceprints it has. Try again later."""
# The library's other errors add theirs, from their class names (``error_code``):
# voice_mismatch, confusable_name, audio, input_too_short, model, ...


class RequestError(VggvoxError):
    """A request that is malformed or cannot be served; its text goes back to the client,
    with a ``code`` a program can act on (see ``error_code``)."""

    def __init__(self, message: str, code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


def error_code(e: Exception) -> str:
    """The ``code`` of an error reply: a RequestError's own (``bad_request``, ``busy``,
    ``not_found``, ``not_allowed``), else the library error's kind, from its class
    (``VoiceMismatchError`` -> ``voice_mismatch``), else ``internal``."""
    if isinstance(e, RequestError):
        return e.code
    if isinstance(e, VggvoxError):
        name = type(e).__name__.removesuffix("Error") or "vggvox"
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return INTERNAL


def error_reply(message: str, code: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "code": code}
