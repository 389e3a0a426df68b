"""Reading YAML that refuses duplicate keys, and checking its values against frozen
dataclasses: errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

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


def _duplicates(node: yaml.Node, path: str, where: str) -> None:
    """Refuse a mapping that gives a key twice, at any depth (PyYAML would silently
    keep the last: an edit to the first would be ignored)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                name = f"{path}.{key.value}" if path else str(key.value)
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise ConfigError(f"{where}: line {line}: duplicate key '{name}' (first "
                                      f"at line {seen[key.value]}): give each key once")
                seen[key.value] = line
                _duplicates(value, name, where)
            else:
                _duplicates(value, path, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicates(item, f"{path}[{i}]", where)


def load_yaml(text: str, where: str) -> Any:
    """The YAML document in ``text`` (None when empty); a ConfigError naming ``where``
    for invalid YAML or a key given twice in one mapping."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _duplicates(node, "", where)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:  # one line: where, and what is wrong there
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    finally:
        loader.dispose()
