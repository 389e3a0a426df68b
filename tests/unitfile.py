"""A systemd unit file's settings, as the unit tests read them."""

from __future__ import annotations

from pathlib import Path


def settings(unit: Path) -> dict[str, list[str]]:
    """Each key of the unit (any section) with its values, in order."""
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out
