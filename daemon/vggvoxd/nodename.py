"""The daemon's ``node``: the name every event it publishes carries (``vggvox.protocol.events``).

A fleet's events meet at a hub (``vggvox-client hub``), where the node tells the
daemons apart: two daemons may both have a source called ``mic``. The config's
top-level ``node`` names it; null is this machine's host name (its first label,
cut to the characters a node may hold).
"""

from __future__ import annotations

import re
import socket

from vggvox.errors import ConfigError
from vggvox.protocol.events import NODE_RE


def host_node() -> str:
    """The host name as a node: its first label, other characters as '-', at most 64."""
    name = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:64] or "localhost"


def parse_node(value: object, where: str) -> str | None:
    """The config's ``node`` (None: unset, the host name at run time), or a ConfigError
    naming the key."""
    if value is None:
        return None
    if not isinstance(value, str) or not NODE_RE.fullmatch(value):
        shown = value if isinstance(value, str) else type(value).__name__
        raise ConfigError(f"{where}: 'node' must be 1 to 64 letters, digits, '.', '_' or '-' "
                          f"(a name for this daemon in a fleet's events), got {shown!r:.80}")
    return value
