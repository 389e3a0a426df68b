"""Control requests: each op's name and the role it needs.

A request is a msgpack map ``{"op": ..., ...}``; its reply ``{"ok": true, ...}``, or an
error reply (``errors``). Under CURVE, a client's key is an admin's or a reader's: a
reader may only look (``list``, ``status``, ``calibration``).
"""

from __future__ import annotations

MAX_REQUEST_BYTES = 16 * 1024 * 1024
"""The largest request a daemon takes by default (``endpoints.max_request_bytes``): a
client splits its audio to fit."""

READER = "reader"
ADMIN = "admin"

ROLES: dict[str, str] = {
    "enroll": ADMIN, "name": ADMIN, "cancel": ADMIN, "remove": ADMIN, "reload": ADMIN,
    "replay": ADMIN, "calibration_reset": ADMIN,
    "list": READER, "status": READER, "calibration": READER,
}
"""Every op, and the role it needs."""


def role_of(op: str) -> str:
    """The role ``op`` needs; an op nobody listed needs an admin."""
    return ROLES.get(op, ADMIN)
