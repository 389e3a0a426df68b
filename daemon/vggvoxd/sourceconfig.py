"""The ``sources:`` list of the config: the live sources one daemon listens to at once.

    sources:
      - {name: kitchen, device: "USB Audio"}     # a microphone, by name or index
      - {name: hall, device: 2}
      - {name: recording, uri: "file:/srv/meeting.wav"}
      - {name: office, device: 3, calibration: office.calibration.yaml}

Each becomes a stream of its own (ring buffer, VAD, windows, turns) named in
every event it gives; one embed executor batches the windows of all of them.
A source's ``calibration`` (``vggvoxd.calibration_overrides``) decides it alone.
Two names that clean to one slug (``Hall.1`` and ``hall-1``: ``vggvox.slug``,
which the MQTT bridge derives its topics and entity ids from) are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vggvox.errors import ConfigError
from vggvox.settingsfile import section, shown
from vggvox.slug import slug
from vggvoxd.source_schemes import find_uri, shared_input, uri_forms


@dataclass(frozen=True)
class SourceSpec:
    """One live source of a daemon that listens to several (``sources:``)."""

    name: str
    """How its events and status name it: letters, digits, '.', '_' or '-'."""
    device: str | int | None = None
    """A microphone: an input device's name (or part of one) or index; null: the default."""
    uri: str | None = None
    """Instead of a device: ``file:PATH`` (played at real-time pace, live), ``stdin``
    (lossless: holds its writer back) or ``stdin:live`` (drops when behind): a scheme
    of ``vggvoxd.source_schemes``."""
    calibration: str | None = None
    """This source's own open-set calibration file (``vggvox-client calibrate``, fitted on
    recordings from its room); null: ``scoring.calibration``, else the model card's."""


SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SOURCES = 64


def parse_sources(data: Any, where: str) -> tuple[SourceSpec, ...]:
    """The ``sources:`` list: each entry a mapping with a unique name, and a device or
    a uri (not both)."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{where}: 'sources' must be a list of {{name, device or uri}}, "
                          f"got {type(data).__name__}")
    if len(data) > MAX_SOURCES:
        raise ConfigError(f"{where}: 'sources' has {len(data)} entries; at most {MAX_SOURCES}")
    out: list[SourceSpec] = []
    for i, entry in enumerate(data):
        key = f"sources[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}: '{key}' must be a mapping with a 'name', "
                              f"got {shown(entry)}")
        spec: SourceSpec = section(SourceSpec, key, entry, where)
        if not SOURCE_NAME.fullmatch(spec.name):
            raise ConfigError(f"{where}: '{key}.name' must be 1 to 64 letters, digits, '.', "
                              f"'_' or '-' (starting with a letter or digit), got {spec.name!r}")
        if spec.name in {o.name for o in out}:
            raise ConfigError(f"{where}: '{key}.name' {spec.name!r} is used twice")
        twin = next((j for j, o in enumerate(out) if slug(o.name) == slug(spec.name)), None)
        if twin is not None:
            raise ConfigError(f"{where}: '{key}.name' {spec.name!r} and 'sources[{twin}].name' "
                              f"{out[twin].name!r} both clean to {slug(spec.name)!r}: they "
                              "would share topics and entity ids; rename one")
        if spec.device is not None and spec.uri is not None:
            raise ConfigError(f"{where}: '{key}' has both 'device' and 'uri': give one")
        if spec.uri is not None and find_uri(spec.uri) is None:
            raise ConfigError(f"{where}: '{key}.uri' must be {uri_forms()}, got {spec.uri!r}")
        out.append(spec)
    why = shared_input([s.uri for s in out if s.uri is not None])
    if why is not None:
        raise ConfigError(f"{where}: 'sources' has {why}")
    return tuple(out)
