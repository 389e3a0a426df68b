"""The pipeline's settings: the sections of ``vggvoxd.yaml`` that say how speech is
heard, cut, embedded, scored and turned into turns, and where voiceprints are kept.

The daemon's ``vggvoxd.config.Settings`` is these plus its runtime sections (audio,
endpoints, security, status, metrics, logging, sources); ``vggvox-client evaluate``
reads these alone (``load``) from the same file, checked the same way
(``vggvox.settingsfile``), so that a conversation runs as the daemon would run it.
The recognizer's own configs (``vggvox.stream``, ``vggvox.search``) are sections as
they are; the sections below add what running them needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir

from vggvox.calibration import FALSE_ACCEPT_RANGE, Calibration
from vggvox.errors import ConfigError, StoreError
from vggvox.search import SearchSettings
from vggvox.settingsfile import Ranges, read, sections
from vggvox.storeopen import ACCEPTED, parse_store_location
from vggvox.stream.decider import TurnConfig
from vggvox.stream.recognizer import RecognizerConfig, ScoringConfig
from vggvox.stream.unknowns import UnknownConfig
from vggvox.stream.vad import VadConfig
from vggvox.stream.windows import WindowConfig

RUNTIME_SECTIONS = ("audio", "endpoints", "security", "status", "metrics", "logging",
                    "sources", "satellites", "node")
"""The sections of ``vggvoxd.yaml`` that only the daemon reads (``vggvoxd.config``
checks them; a test holds the two lists equal). A reader of the pipeline's sections
accepts them by name, so that a misspelt section is still refused."""


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
    """SQLite file (or ``sqlite:PATH``), or a ``postgresql://`` URL (``storeopen.py``);
    null: $STATE_DIRECTORY/voiceprints.db under systemd, else the user data dir."""


def _store_problem(value: object) -> str | None:
    """Why ``store.path`` names no store we can open (None: it does)."""
    if value is None:
        return None
    try:
        parse_store_location(str(value))
    except StoreError:
        return f"must be {ACCEPTED}"
    return None


RANGES: Ranges = {
    ("store", "path"): _store_problem,
    ("vad", "aggressiveness"): lambda v: None if 0 <= v <= 3 else "must be 0..3",
    ("vad", "frame_ms"): lambda v: None if v in (10, 20, 30) else "must be 10, 20 or 30",
    ("vad", "onset_ms"): lambda v: None if 0 <= v <= 2000 else "must be 0..2000",
    ("vad", "hangover_ms"): lambda v: None if 0 <= v <= 5000 else "must be 0..5000",
    ("window", "length_s"): lambda v: None if 0.5 <= v <= 20 else "must be 0.5..20",
    ("window", "hop_s"): lambda v: None if 0.05 <= v <= 20 else "must be 0.05..20",
    ("window", "min_speech_s"): lambda v: None if 0.2 <= v <= 20 else "must be 0.2..20",
    ("window", "max_batch"): lambda v: None if 1 <= v <= 64 else "must be 1..64",
    ("window", "queue"): lambda v: None if 1 <= v <= 10000 else "must be 1..10000",
    ("model", "threads"): lambda v: None if 1 <= v <= 64 else "must be 1..64",
    ("scoring", "metric"): lambda v: None if v in ("cosine", "euclidean")
    else "must be cosine or euclidean",
    ("scoring", "false_accept"): lambda v: None if FALSE_ACCEPT_RANGE[0] <= v
    <= FALSE_ACCEPT_RANGE[1] else "must be 1e-6..0.5",
    ("scoring", "threshold"): lambda v: None if v is None or -2 <= v <= 1 else "must be -2..1",
    ("scoring", "top_k"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("turns", "change_threshold"): lambda v: None if v is None or -2 <= v <= 1
    else "must be -2..1",
    ("turns", "change_windows"): lambda v: None if 1 <= v <= 20 else "must be 1..20",
    ("turns", "min_turn_windows"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("turns", "hysteresis"): lambda v: None if 1 <= v <= 20 else "must be 1..20",
    ("turns", "straddle"): lambda v: None if 0 <= v <= 1 else "must be 0..1",
    ("unknowns", "max_clusters"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("unknowns", "max_age_s"): lambda v: None if 10 <= v <= 86400 else "must be 10..86400",
    ("unknowns", "keep_speech_s"): lambda v: None if 3 <= v <= 300 else "must be 3..300",
    ("unknowns", "false_merge"): lambda v: None if 1e-6 <= v <= 0.5 else "must be 1e-6..0.5",
    ("unknowns", "threshold"): lambda v: None if v is None or -1 <= v <= 1 else "must be -1..1",
    ("enroll", "min_speech_s"): lambda v: None if 0.5 <= v <= 600 else "must be 0.5..600",
    ("enroll", "max_live_s"): lambda v: None if 1 <= v <= 600 else "must be 1..600",
    ("enroll", "max_audio_s"): lambda v: None if 5 <= v <= 600 else "must be 5..600",
}
"""The allowed range of each numeric or enumerated pipeline key: a check that returns
what is wrong (named with the key by ``settingsfile.section``), or None."""


@dataclass(frozen=True)
class PipelineSettings:
    vad: VadConfig = field(default_factory=VadConfig)
    window: WindowSettings = field(default_factory=WindowSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    turns: TurnConfig = field(default_factory=TurnConfig)
    unknowns: UnknownConfig = field(default_factory=UnknownConfig)
    search: SearchSettings = field(default_factory=SearchSettings)
    enroll: EnrollSettings = field(default_factory=EnrollSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    def check(self, where: str) -> None:
        """The rules across keys (each key's own range is checked as it is read)."""
        w = self.window
        if w.min_speech_s > w.length_s:
            raise ConfigError(f"{where}: 'window.min_speech_s' must not exceed "
                              "'window.length_s'")

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

    def store_location(self) -> str | Path:
        """The store to open (``storeopen.open_store``): a PostgreSQL URL, or the SQLite
        file's path as ``store_path`` gives it."""
        if self.store.path:
            return parse_store_location(self.store.path)
        return self.store_path()

    def store_path(self) -> Path:
        """The SQLite file's path (a URL's text as a path: use ``store_location``)."""
        if self.store.path:
            found = parse_store_location_quiet(self.store.path)
            return found if isinstance(found, Path) else Path(self.store.path)
        state = os.environ.get("STATE_DIRECTORY")
        base = Path(state.split(":")[0]) if state else Path(user_data_dir("vggvox"))
        return base / "voiceprints.db"


def parse_store_location_quiet(text: str) -> str | Path:
    """``storeopen.parse_store_location``, with a text it refuses taken as a path (the
    config's check refused it already)."""
    try:
        return parse_store_location(text)
    except StoreError:
        return Path(text).expanduser()


def parse(data: Any, where: str = "config") -> PipelineSettings:
    """The pipeline's sections of a document (the daemon's sections accepted by name
    and not read)."""
    settings = PipelineSettings(**sections(PipelineSettings, data, where, RANGES,
                                           RUNTIME_SECTIONS))
    settings.check(where)
    return settings


def load(path: Path | None) -> PipelineSettings:
    """The pipeline's settings of the config file at ``path`` (found by
    ``vggvox.protocol.endpoints.find_config``); None: the defaults."""
    return PipelineSettings() if path is None else parse(read(path), str(path))
