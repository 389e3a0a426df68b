"""A source's name as one safe token: MQTT topic levels, Home Assistant ids, file names.

Two names that give the same slug (``Hall.1`` and ``hall-1``) would share topics
and entity ids, so the daemon refuses such a pair in its ``sources:`` list and the
bridges use this one function to derive them.
"""

from __future__ import annotations

import re

_RUNS = re.compile(r"[^a-z0-9]+")


def slug(name: str) -> str:
    """Lower case, each run of characters other than ASCII letters and digits turned
    into one '_', none at either end; ``source`` when nothing is left."""
    return _RUNS.sub("_", name.lower()).strip("_") or "source"
