"""Checking YAML values against frozen dataclasses: errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from vggvox.errors import VggvoxError

Ranges = dict[tuple[str, str], typing.Callable[[Any], "str | None"]]
"""(section, key) -> a check returning an error text, or None when the value is fine."""


class ConfigError(VggvoxError):
    """A configuration file or value that the daemon cannot start with."""


def _accepts(hint: Any, value: Any) -> bool:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        if t is type(None) and value is None:
            return True
        if t is bool and isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t in (int, str) and isinstance(value, t) and not isinstance(value, bool):
            return True
    return False


def section(cls: type, name: str, data: Any, where: str,
            ranges: Ranges | None = None) -> Any:
    """``data`` (a mapping from YAML) as a ``cls``: every key known, of its type and
    within its range; an error names the key."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{name}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{name}.{key}' (known: {sorted(known)})")
    for key, value in data.items():
        if not _accepts(hints[key], value):
            raise ConfigError(f"{where}: '{name}.{key}' must be {hints[key]}, got {value!r}")
        check = (ranges or {}).get((name, key))
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}: '{name}.{key}' {problem}, got {value!r}")
        if hints[key] == float | None and isinstance(value, int):
            data = {**data, key: float(value)}
    try:
        return cls(**data)
    except ValueError as e:  # a library config's own check (__post_init__) names the key
        raise ConfigError(f"{where}: {e}") from None
