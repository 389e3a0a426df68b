"""vggvox-client: enrollment, replay, the bridges and the offline evaluation modes.

``Client`` (with ``ClientError``) is a running vggvoxd from Python::

    from vggvox_client import Client

Both are imported on first use, so that importing the package (as every
``vggvox_client.x`` does first) stays cheap. See docs/python.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Client": "vggvox_client.client",
    "ClientError": "vggvox_client.connection",
}

__all__ = ["Client", "ClientError"]

if TYPE_CHECKING:
    from vggvox_client.client import Client
    from vggvox_client.connection import ClientError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vggvox_client' has no attribute {name!r}")
