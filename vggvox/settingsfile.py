"""A settings file: YAML read strictly (a key given twice, an alias bomb and invalid
YAML are one line naming the file), and its sections checked into frozen dataclasses
with errors that name the key.

The pipeline's sections (``vggvox.settings``) and the daemon's runtime sections
(``vggvoxd.config``) are read with these; so each reader of ``vggvoxd.yaml`` refuses
what the other refuses, with the same message.
"""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from vggvox.errors import ConfigError

Ranges = dict[tuple[str, str], typing.Callable[[Any], "str | None"]]
"""(section, key) -> a check returning an error text, or None when the value is fine."""


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 3, 8, 8
_SHOWN.maxstring = _SHOWN.maxother = 80


def shown(value: Any) -> str:
    """A value in an error message, cut short: a list of a thousand sources or a deep
    structure is still one readable line."""
    return _SHOWN.repr(value)


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
            raise ConfigError(f"{where}: '{name}.{key}' must be {hints[key]}, got {shown(value)}")
        check = (ranges or {}).get((name, key))
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}: '{name}.{key}' {problem}, got {shown(value)}")
        if hints[key] == float | None and isinstance(value, int):
            data = {**data, key: float(value)}
    try:
        return cls(**data)
    except ValueError as e:  # a library config's own check (__post_init__) names the key
        raise ConfigError(f"{where}: {e}") from None


def sections(cls: type, data: Any, where: str, ranges: Ranges,
             others: Collection[str] = ()) -> dict[str, Any]:
    """The sections of a document (``data``, the top level of a file) that ``cls``
    declares (its fields with a ``default_factory``: each a dataclass of keys), checked
    by ``section``. A top-level key that is neither a field of ``cls`` nor one of
    ``others`` (sections another reader checks) is refused: a misspelt section is
    never silently ignored."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields} | set(others)
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown section '{key}' (known: {sorted(known)})")
    out: dict[str, Any] = {}
    for f in fields:
        factory = f.default_factory
        if isinstance(factory, type):  # a section (a list such as sources: its reader's)
            out[f.name] = section(factory, f.name, data.get(f.name), where, ranges)
    return out


def read(path: Path) -> Any:
    """The YAML document of the file at ``path`` (``load_yaml``); a ConfigError naming
    it when it cannot be read."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return load_yaml(text, str(path))


MAX_VALUES = 100_000
"""Values (scalars, lists, mappings) a document may hold once its aliases are expanded:
far beyond any configuration (the template holds about 200), far below what an alias
bomb holds (billions, from a few hundred bytes)."""


class _Walk:
    """One walk of a composed document, each node once (by its id), so that an alias
    costs nothing however often it is used. It refuses, in one line naming where:
    a mapping that gives a key twice (PyYAML would silently keep the last: an edit to
    the first would be ignored), a value that contains itself through an alias, and a
    document whose aliases expand to more than MAX_VALUES values (PyYAML would build
    it: its merge keys ``<<`` copy every key, so a merge bomb costs gigabytes)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.sizes: dict[int, int] = {}
        """id(node) -> the values it expands to, for every node walked."""
        self.open: dict[int, str] = {}
        """id(node) -> its path, for the nodes being walked (an ancestor met again is
        a cycle)."""

    def walk(self, node: yaml.Node, path: str) -> int:
        """The values ``node`` expands to, itself included."""
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if id(node) in self.open:
            outer = self.open[id(node)] or "the document"
            raise ConfigError(f"{self.where}: line {line}: '{outer}' contains itself (an "
                              f"alias of it at '{path}')")
        self.open[id(node)] = path
        size = 1 + sum(self.walk(child, at) for child, at in self._children(node, path))
        del self.open[id(node)]
        if size > MAX_VALUES:
            raise ConfigError(f"{self.where}: line {line}: '{path or 'the document'}' "
                              f"expands to more than {MAX_VALUES:,} values through its "
                              "aliases: not a configuration")
        self.sizes[id(node)] = size
        return size

    def _children(self, node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
        """A mapping's keys and values, a sequence's items, each with its path; a
        mapping's key given twice is refused here."""
        if isinstance(node, yaml.SequenceNode):
            return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            return []
        out: list[tuple[yaml.Node, str]] = []
        seen: dict[object, int] = {}
        for key, value in node.value:
            name = path
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                name = f"{path}.{key.value}" if path else str(key.value)
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise ConfigError(f"{self.where}: line {line}: duplicate key '{name}' "
                                      f"(first at line {seen[key.value]}): give each key "
                                      "once")
                seen[key.value] = line
            out += [(key, name), (value, name)]
        return out


def load_yaml(text: str, where: str) -> Any:
    """The YAML document in ``text`` (None when empty); a ConfigError naming ``where``
    for invalid YAML, a key given twice in one mapping, or aliases that make a value
    contain itself or expand past MAX_VALUES (``_Walk``)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Walk(where).walk(node, "")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:  # one line: where, and what is wrong there
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:  # PyYAML's composer and the walk recurse once per level
        raise ConfigError(f"{where}: not a configuration: lists or mappings nested too "
                          "deeply") from None
    finally:
        loader.dispose()
