"""The ``sources:`` list of the config: the live sources one daemon listens to at once.

    sources:
      - {name: kitchen, device: "USB Audio"}     # a microphone, by name or index
      - {name: hall, device: 2}
      - {name: recording, uri: "file:/srv/meeting.wav"}
      - {name: office, device: 3, calibration: office.calibration.yaml}
      - {name: porch, uri: "rtsp://viewer:secret@192.168.1.20/s1",
         options: {rtsp_transport: udp}}                 # a camera, FFmpeg's options
      - {name: radio, uri: "http://icecast.lan:8000/live.ogg"}

Each becomes a stream of its own (ring buffer, VAD, windows, turns) named in
every event it gives; one embed executor batches the windows of all of them.
A source's ``calibration`` (``vggvoxd.calibration_overrides``) decides it alone.
A network stream's ``options`` are FFmpeg's (``docs/network-audio.md``).
Two names that clean to one slug (``Hall.1`` and ``hall-1``: ``vggvox.slug``,
which the MQTT bridge derives its topics and entity ids from) are refused.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from vggvox.errors import ConfigError
from vggvox.settingsfile import section, shown
from vggvox.slug import slug
from vggvoxd import neturl
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
    options: tuple[tuple[str, str], ...] = ()
    """A network stream's FFmpeg options (``rtsp_transport: udp``), as the config's
    ``options`` mapping gives them."""


MAX_OPTIONS = 32
OPTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def parse_options(data: Any, key: str, where: str) -> tuple[tuple[str, str], ...]:
    """A source's ``options``: a mapping of FFmpeg option names to scalar values."""
    if not isinstance(data, dict) or len(data) > MAX_OPTIONS:
        raise ConfigError(f"{where}: '{key}' must be a mapping of at most {MAX_OPTIONS} "
                          f"FFmpeg options (name: value), got {shown(data)}")
    out = []
    for name, value in data.items():
        if not isinstance(name, str) or not OPTION_NAME.fullmatch(name):
            raise ConfigError(f"{where}: '{key}' has an option name that is not an FFmpeg "
                              f"option's (lower-case letters, digits, '_'): {shown(name)}")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: '{key}.{name}' must be a string or a number, "
                              f"got {shown(value)}")
        out.append((name, str(value)))
    return tuple(out)


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
        options = entry.get("options")
        spec: SourceSpec = section(SourceSpec, key,
                                   {k: v for k, v in entry.items() if k != "options"}, where)
        if options is not None:
            spec = dataclasses.replace(spec, options=parse_options(options, f"{key}.options",
                                                                   where))
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
        _check_uri(spec, key, where)
        out.append(spec)
    why = shared_input([s.uri for s in out if s.uri is not None])
    if why is not None:
        raise ConfigError(f"{where}: 'sources' has {why}")
    return tuple(out)


def _check_uri(spec: SourceSpec, key: str, where: str) -> None:
    """A uri of a scheme of the table, a URL written as one, and options only for one."""
    uri = spec.uri
    if uri is not None and find_uri(uri) is None:
        raise ConfigError(f"{where}: '{key}.uri' must be {uri_forms()}, "
                          f"got {neturl.shown(uri)!r}")
    if uri is not None and neturl.is_network(uri):
        try:
            neturl.check_form(uri)
        except ValueError as e:
            raise ConfigError(f"{where}: '{key}.uri' {neturl.shown(uri)}: {e}") from None
    elif spec.options:
        raise ConfigError(f"{where}: '{key}.options' are a network stream's; "
                          f"{spec.name!r} is none")
