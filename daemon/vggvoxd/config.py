"""vggvoxd settings: YAML validated once, at start, into frozen dataclasses.

Search order: ``--config FILE``, else the user's config directory
(``~/.config/vggvox/vggvoxd.yaml``), else ``/etc/vggvox/vggvoxd.yaml``, else the
defaults below (the same as ``config/vggvoxd.yaml``; ``vggvox.protocol.endpoints``
finds the file). An unknown key, a key given twice, a wrong type or an out-of-range
value stops start-up with a message naming the key.

``Settings`` is the pipeline's settings (``vggvox.settings``: vad, window, model,
scoring, turns, unknowns, search, enroll, store; what ``vggvox-client evaluate``
reads too) and the runtime sections below, each read by ``vggvox.settingsfile``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vggvox import settings as pipeline
from vggvox.errors import ConfigError
from vggvox.loopback import is_loopback
from vggvox.protocol.endpoints import find_config, runtime_endpoint
from vggvox.protocol.requests import MAX_REQUEST_BYTES
from vggvox.settingsfile import Ranges, read, sections
from vggvoxd.nodename import host_node, parse_node
from vggvoxd.sourceconfig import SourceSpec, parse_sources

__all__ = ["ConfigError", "Settings", "SourceSpec", "load", "override", "parse"]


@dataclass(frozen=True)
class AudioSettings:
    device: str | int | None = None
    """Input device name (substring match) or index; null for the system default."""
    rate: int = 16000
    """Capture rate in Hz. Only 16000: PulseAudio/ALSA resample the device for us."""
    block_ms: int = 20
    """Capture block length in ms (PortAudio frames per buffer)."""
    buffer_s: float = 30.0
    """Ring buffer capacity in seconds; must hold at least one window."""


@dataclass(frozen=True)
class EndpointSettings:
    events: str | None = None
    """ZeroMQ PUB endpoint; null: ipc://<runtime dir>/events.sock."""
    control: str | None = None
    """ZeroMQ ROUTER endpoint; null: ipc://<runtime dir>/control.sock."""
    events_hwm: int = 1000
    """Messages queued per subscriber before newer ones are dropped for it."""
    max_request_bytes: int = MAX_REQUEST_BYTES
    """Largest control request; a larger one is refused by ZeroMQ."""


@dataclass(frozen=True)
class SecuritySettings:
    group: str | None = None
    """Group given the ipc sockets (and the runtime folder they are in): its members
    may use the client. null: the sockets are this user's alone."""
    server_key: str | None = None
    """This daemon's CURVE secret key file (``vggvox-client keygen``): every client
    then needs a key, on both sockets. Needed for TCP beyond loopback."""
    admins: str | None = None
    """Folder of the public ``.key`` files of clients that may do everything."""
    readers: str | None = None
    """Folder of the public ``.key`` files of clients that may only listen, list and
    ask for status."""
    satellites: str | None = None
    """Folder of the public ``.key`` files of satellites (remote microphones) that may
    stream audio to ``satellites.listen``; they may do nothing else."""


@dataclass(frozen=True)
class SatelliteSettings:
    listen: str | None = None
    """ZeroMQ endpoint remote microphones stream to (``vggvoxd.satellites``), e.g.
    tcp://0.0.0.0:5562; null: none."""
    max: int = 16
    """Satellites connected at once; another is refused until one goes."""
    timeout_s: float = 3.0
    """A satellite silent this long is ``lost``."""
    forget_s: float = 60.0
    """A lost satellite silent this long leaves ``status`` (one that says bye, at once)."""


@dataclass(frozen=True)
class MetricsSettings:
    listen: str | None = None
    """HOST:PORT of the /metrics endpoint (``vggvoxd.prometheus``); null: no endpoint."""
    public: bool = False
    """Allow a listen address that is not loopback (the endpoint has no authentication)."""

    def __post_init__(self) -> None:
        if self.listen is None:
            return
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"'metrics.listen' must be HOST:PORT, got {self.listen!r}")
        if not is_loopback(host) and not self.public:
            raise ValueError(f"'metrics.listen' {self.listen} is not loopback: the endpoint "
                             "has no authentication; set 'metrics.public: true' to mean it")

    @property
    def address(self) -> tuple[str, int]:
        assert self.listen is not None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class StatusSettings:
    interval_s: float = 5.0
    """Heartbeat period of status events."""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""


RANGES: Ranges = {
    **pipeline.RANGES,
    ("audio", "rate"): lambda v: None if v == 16000 else "only 16000 is supported",
    ("audio", "block_ms"): lambda v: None if 5 <= v <= 200 else "must be 5..200",
    ("audio", "buffer_s"): lambda v: None if 5 <= v <= 600 else "must be 5..600",
    ("endpoints", "events_hwm"): lambda v: None if 1 <= v <= 1_000_000 else "must be 1..1e6",
    ("endpoints", "max_request_bytes"): lambda v: None if 1024 <= v <= 1 << 30
    else "must be 1 KiB..1 GiB",
    ("satellites", "max"): lambda v: None if 1 <= v <= 256 else "must be 1..256",
    ("satellites", "timeout_s"): lambda v: None if 0.5 <= v <= 60 else "must be 0.5..60",
    ("satellites", "forget_s"): lambda v: None if 1 <= v <= 86400 else "must be 1..86400",
    ("status", "interval_s"): lambda v: None if 0.2 <= v <= 3600 else "must be 0.2..3600",
    ("logging", "level"): lambda v: None if v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
    else "must be DEBUG, INFO, WARNING or ERROR",
}
"""The allowed range of each numeric or enumerated key: the pipeline's, and the
runtime's."""


@dataclass(frozen=True)
class Settings(pipeline.PipelineSettings):
    audio: AudioSettings = field(default_factory=AudioSettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    satellites: SatelliteSettings = field(default_factory=SatelliteSettings)
    sources: tuple[SourceSpec, ...] = ()
    """Several live sources at once; empty: the one of ``--source`` (the microphone)."""
    node: str | None = None
    """This daemon's name in its events (``nodename``); None: the host name."""

    @property
    def node_name(self) -> str:
        return self.node or host_node()

    def check(self, where: str) -> None:
        """The rules across keys: the pipeline's, then the runtime's."""
        super().check(where)
        if self.audio.buffer_s < 2 * self.window.length_s:
            raise ConfigError(f"{where}: 'audio.buffer_s' must hold two windows "
                              f"(>= {2 * self.window.length_s})")
        sec = self.security
        if sec.server_key and not (sec.admins or sec.readers):
            raise ConfigError(f"{where}: 'security.server_key' needs 'security.admins' or "
                              "'security.readers': a folder of clients' public keys")
        if (sec.admins or sec.readers) and not sec.server_key:
            raise ConfigError(f"{where}: 'security.admins' and 'security.readers' need "
                              "'security.server_key' (this daemon's secret key)")
        self._check_satellites(where)

    def _check_satellites(self, where: str) -> None:
        """A satellites socket beyond loopback needs CURVE, and CURVE needs the folder of
        the satellites' keys (without it none could connect)."""
        sec, listen = self.security, self.satellites.listen
        if sec.satellites and not sec.server_key:
            raise ConfigError(f"{where}: 'security.satellites' needs 'security.server_key' "
                              "(this daemon's secret key)")
        if listen is None:
            return
        if not listen.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"{where}: 'satellites.listen' must be tcp://HOST:PORT or "
                              f"ipc://PATH, got {listen!r}")
        if sec.server_key and not sec.satellites:
            raise ConfigError(f"{where}: 'satellites.listen' with 'security.server_key' needs "
                              "'security.satellites': a folder of the satellites' public keys")
        host = listen.removeprefix("tcp://").rpartition(":")[0].strip("[]")
        if listen.startswith("tcp://") and not sec.server_key and not is_loopback(host):
            raise ConfigError(f"{where}: 'satellites.listen' {listen} is not loopback: "
                              "satellites beyond this machine need CURVE keys "
                              "('security.server_key' and 'security.satellites'; "
                              "vggvox-client keygen makes them)")

    def endpoint(self, which: str) -> str:
        value = getattr(self.endpoints, which)
        if value:
            return value
        return runtime_endpoint(which)


def parse(data: Any, where: str = "config") -> Settings:
    values = sections(Settings, data, where, RANGES)  # refuses a top level not a mapping
    settings = Settings(**values, sources=parse_sources((data or {}).get("sources"), where),
                        node=parse_node((data or {}).get("node"), where))
    settings.check(where)
    return settings


def load(path: str | Path | None) -> tuple[Settings, Path | None]:
    """Settings from the first config found, and the file they came from."""
    found = find_config(path)
    if found is None:
        return Settings(), None
    return parse(read(found), str(found)), found


def override(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy with some keys of one section replaced (command-line overrides)."""
    current = getattr(settings, section)
    return dataclasses.replace(settings, **{section: dataclasses.replace(current, **values)})
