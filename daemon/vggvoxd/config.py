"""vggvoxd settings: YAML validated once, at start, into frozen dataclasses.

Search order: ``--config FILE``, else the user's config directory
(``~/.config/vggvox/vggvoxd.yaml``), else ``/etc/vggvox/vggvoxd.yaml``, else the
defaults below (the same as ``config/vggvoxd.yaml``). An unknown key, a key
given twice, a wrong type or an out-of-range value stops start-up with a message
naming the key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from vggvox.calibration import Calibration
from vggvox.errors import ConfigError
from vggvox.protocol.endpoints import find_config, runtime_endpoint
from vggvox.protocol.requests import MAX_REQUEST_BYTES
from vggvox.search import SearchSettings
from vggvox.stream.decider import TurnConfig
from vggvox.stream.recognizer import RecognizerConfig, ScoringConfig
from vggvox.stream.unknowns import UnknownConfig
from vggvox.stream.vad import VadConfig
from vggvox.stream.windows import WindowConfig
from vggvoxd.prometheus import MetricsSettings
from vggvoxd.ranges import RANGES
from vggvoxd.sourceconfig import SourceSpec, parse_sources
from vggvoxd.validate import load_yaml, section

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


# The recognizer's own configs (vggvox.stream) are sections of the daemon's
# settings as they are; the daemon adds only what is about running it.
VadSettings = VadConfig


@dataclass(frozen=True)
class WindowSettings(WindowConfig):
    max_batch: int = 8
    """Most windows embedded in one ONNX call."""
    queue: int = 32
    """Windows that may wait for the embedder, per kind of source: beyond, the oldest
    live one is dropped, and a finite source (file, replay) waits."""


@dataclass(frozen=True)
class ModelSettings:
    name: str = "campplus-int8"
    """Shipped model (campplus-int8, campplus, ge2e) or the path of a model card."""
    threads: int = 1
    """ONNX Runtime intra-op threads."""


@dataclass(frozen=True)
class ScoringSettings(ScoringConfig):
    metric: str = "cosine"
    """cosine or euclidean."""
    calibration: str | None = None
    """An open-set calibration file (``vggvox-client calibrate``) every source uses instead
    of the model card's; null: the card's. A source's own ``calibration`` wins."""


@dataclass(frozen=True)
class EnrollSettings:
    min_speech_s: float = 3.0
    """Net speech (after VAD) an enrollment needs."""
    max_live_s: float = 60.0
    """Longest live enrollment recording."""
    max_audio_s: float = 120.0
    """Most audio one enroll request may carry, all clips together (memory and time)."""


@dataclass(frozen=True)
class StoreSettings:
    path: str | None = None
    """SQLite file; null: $STATE_DIRECTORY/voiceprints.db under systemd, else the user data dir."""


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


@dataclass(frozen=True)
class StatusSettings:
    interval_s: float = 5.0
    """Heartbeat period of status events."""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    turns: TurnConfig = field(default_factory=TurnConfig)
    unknowns: UnknownConfig = field(default_factory=UnknownConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    enroll: EnrollSettings = field(default_factory=EnrollSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    sources: tuple[SourceSpec, ...] = ()
    """Several live sources at once; empty: the one of ``--source`` (the microphone)."""

    def recognizer(self, calibration: Calibration | None = None) -> RecognizerConfig:
        """The library's config for one stream; ``calibration`` (loaded by the daemon from
        ``scoring.calibration`` or the source's own) replaces the card's."""
        w, s = self.window, self.scoring
        return RecognizerConfig(
            vad=self.vad,
            window=WindowConfig(w.length_s, w.hop_s, w.min_speech_s),
            scoring=ScoringConfig(s.false_accept, s.threshold, s.top_k, s.adapt),
            turns=self.turns,
            unknowns=self.unknowns,
            calibration=calibration,
        )

    def store_path(self) -> Path:
        if self.store.path:
            return Path(self.store.path).expanduser()
        state = os.environ.get("STATE_DIRECTORY")
        base = Path(state.split(":")[0]) if state else Path(user_data_dir("vggvox"))
        return base / "voiceprints.db"

    def endpoint(self, which: str) -> str:
        value = getattr(self.endpoints, which)
        if value:
            return value
        return runtime_endpoint(which)


def parse(data: Any, where: str = "config") -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping")
    sections = {f.name: f.default_factory for f in dataclasses.fields(Settings)
                if f.name != "sources"}  # type: ignore[misc]
    for key in data:
        if key not in sections and key != "sources":
            raise ConfigError(f"{where}: unknown section '{key}' "
                              f"(known: {sorted([*sections, 'sources'])})")
    settings = Settings(**{
        name: section(factory, name, data.get(name), where, RANGES)  # type: ignore[arg-type]
        for name, factory in sections.items()
    }, sources=parse_sources(data.get("sources"), where))
    w = settings.window
    if w.min_speech_s > w.length_s:
        raise ConfigError(f"{where}: 'window.min_speech_s' must not exceed 'window.length_s'")
    if settings.audio.buffer_s < 2 * w.length_s:
        raise ConfigError(f"{where}: 'audio.buffer_s' must hold two windows (>= {2 * w.length_s})")
    sec = settings.security
    if sec.server_key and not (sec.admins or sec.readers):
        raise ConfigError(f"{where}: 'security.server_key' needs 'security.admins' or "
                          "'security.readers': a folder of clients' public keys")
    if (sec.admins or sec.readers) and not sec.server_key:
        raise ConfigError(f"{where}: 'security.admins' and 'security.readers' need "
                          "'security.server_key' (this daemon's secret key)")
    return settings


def load(path: str | Path | None) -> tuple[Settings, Path | None]:
    """Settings from the first config found, and the file they came from."""
    found = find_config(path)
    if found is None:
        return Settings(), None
    try:
        text = found.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{found}: cannot read: {e}") from None
    return parse(load_yaml(text, str(found)), str(found)), found


def override(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy with some keys of one section replaced (command-line overrides)."""
    current = getattr(settings, section)
    return dataclasses.replace(settings, **{section: dataclasses.replace(current, **values)})
