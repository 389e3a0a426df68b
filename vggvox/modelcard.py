"""Model cards: the YAML file beside each ONNX speaker model.

A card says what the network expects (raw waveform or features, and which
front-end), how long its input must be, how big its embedding is and which
threshold to start from. Any ONNX speaker model with a valid card loads the
same way as the shipped ones.

A card with ``kind: segmentation`` describes another kind of model, a speaker
segmentation network (``SegmentationCard``, read by ``load_segmentation_card``):
which local speakers speak in each frame of a fixed chunk. ``load_card`` reads
speaker-embedding cards only (they have no ``kind`` key).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from vggvox.calibration import Calibration
from vggvox.errors import ModelError
from vggvox.frontend_kinds import KINDS, FrontEndParams, foreign_keys, input_kinds

log = logging.getLogger(__name__)

SHIPPED = {"campplus": "campplus.yaml", "campplus-int8": "campplus-int8.yaml",
           "ge2e": "ge2e.yaml"}
DEFAULT_MODEL = "campplus-int8"
SHIPPED_SEGMENTATION = {"segmentation-3.0": "segmentation-3.0.yaml"}
GRAPH_OPTIMIZATIONS = ("basic", "extended", "all")


@dataclass(frozen=True)
class Partials:
    """Cut an utterance into fixed partial windows and average their embeddings."""

    frames: int
    """Feature frames per partial."""
    hop_samples: int
    """Samples per feature frame."""
    context_samples: int
    """Extra samples handed to the graph on each side of a partial."""
    rate: float
    """Partials per second of audio."""
    min_coverage: float
    """Keep the last, padded partial only if it is at least this full."""

    @property
    def samples(self) -> int:
        return self.frames * self.hop_samples


@dataclass(frozen=True)
class ModelCard:
    """Everything the runtime needs to know about one ONNX speaker model."""

    name: str
    version: str
    path: Path
    """The .onnx file (resolved relative to the card)."""
    sha256: str
    license: str
    source: str
    sample_rate: int
    input_kind: str
    input_name: str
    frontend: FrontEndParams
    """Its front-end kind's card fields (``frontend_kinds``: ``FrontEnd`` for kaldi_fbank)."""
    volume_norm_dbfs: float | None
    partials: Partials | None
    embedding_size: int
    min_input_s: float
    threshold: float
    change_threshold: float
    """Cosine between a window and a turn's evidence below which the turn decider
    hears another speaker (optional in a card: defaults to ``threshold``)."""
    graph_optimization: str = "all"
    """onnxruntime's graph optimisation level (optional key): ``all`` adds layout
    transforms that make an int8 graph's result depend on the batch size, so a
    quantised model's card says ``extended``, where batched equals one by one."""
    calibration: Calibration | None = None
    """Open-set calibration (optional key ``calibration``: a file beside the card),
    which turns a false-accept rate into a threshold and a score into a confidence."""

    @property
    def tag(self) -> str:
        """Identifies the model that made an embedding: never mix two tags."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class SegmentationCard:
    """An ONNX speaker-segmentation model: per frame of a fixed chunk, the log-probability
    of each powerset class (a set of the chunk's local speakers active together)."""

    name: str
    version: str
    path: Path
    sha256: str
    license: str
    source: str
    sample_rate: int
    input_name: str
    output_name: str
    chunk_samples: int
    frames: int
    """Output frames per chunk."""
    frame_start_s: float
    frame_step_s: float
    frame_duration_s: float
    warm_up: float
    """Fraction of a chunk, at each end, whose frames see little context."""
    powerset: tuple[tuple[int, ...], ...]
    """The local speakers active in each output class, in the model's class order."""
    max_speakers_per_chunk: int


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ModelError(f"{where}: missing key '{key}'")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ModelError(f"{where}: key '{key}' must be {kind}, got {value!r}")
    return value


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read(card_path: Path, where: str) -> dict[str, Any]:
    if not card_path.is_file():
        raise ModelError(f"{where}: model card not found")
    try:
        data = yaml.safe_load(card_path.read_text())
    except yaml.YAMLError as e:
        raise ModelError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{where}: a model card must be a YAML mapping")
    return data


def _frontend(data: dict[str, Any], where: str) -> tuple[str, FrontEndParams]:
    """The card's ``input.kind`` and its front-end kind's fields, which must fit it."""
    kind = _get(_get(data, "input", dict, where), "kind", str, f"{where}: input")
    if kind not in input_kinds():
        raise ModelError(f"{where}: input.kind must be one of {input_kinds()}, got {kind!r}")
    fe = dict(_get(data, "frontend", dict, where))
    fe_type = _get(fe, "type", str, f"{where}: frontend")
    if fe_type not in KINDS:
        raise ModelError(f"{where}: frontend.type must be one of {tuple(KINDS)}, "
                         f"got {fe_type!r}")
    frontend = KINDS[fe_type]
    if kind != frontend.input_kind:
        raise ModelError(f"{where}: input.kind {kind!r} does not fit frontend.type {fe_type!r}")
    fe.pop("description", None)
    ignored = foreign_keys(frontend, set(fe))
    if ignored:
        log.warning("%s: frontend: %s mean nothing to %s (ignored)", where,
                    ", ".join(sorted(ignored)), fe_type)
    try:
        return kind, frontend.params(**{k: v for k, v in fe.items() if k not in ignored})
    except TypeError as e:
        raise ModelError(f"{where}: frontend: {e}") from None


def _partials(data: dict[str, Any], where: str) -> Partials | None:
    if data.get("partials") is None:
        return None
    p = _get(data, "partials", dict, where)
    sub = f"{where}: partials"
    return Partials(frames=_get(p, "frames", int, sub),
                    hop_samples=_get(p, "hop_samples", int, sub),
                    context_samples=_get(p, "context_samples", int, sub),
                    rate=_get(p, "rate", float, sub),
                    min_coverage=_get(p, "min_coverage", float, sub))


def _volume(data: dict[str, Any], where: str) -> float | None:
    volume = (data.get("preprocess") or {}).get("volume_norm_dbfs")
    if volume is not None and not isinstance(volume, (int, float)):
        raise ModelError(f"{where}: preprocess.volume_norm_dbfs must be a number or null")
    return None if volume is None else float(volume)


def _optional(data: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    return _get(data, key, kind, where) if key in data else default


def _calibration(card: ModelCard, card_path: Path, data: dict[str, Any],
                 where: str) -> Calibration:
    cal_path = card_path.parent / _get(data, "calibration", str, where)
    cal = Calibration.load(cal_path)
    if cal.model != card.name:
        raise ModelError(f"{cal_path}: a calibration of {cal.model!r}, "
                         f"not of this card's model {card.name!r}")
    return cal


def load_card(card_path: str | Path, verify: bool = True,
              calibration: bool = True) -> ModelCard:
    """Parse and validate a card; with ``verify``, check the model file's sha256;
    without ``calibration``, leave its calibration file unread (to write a new one)."""
    card_path = Path(card_path)
    where = str(card_path)
    data = _read(card_path, where)
    if data.get("kind", "embedding") != "embedding":
        raise ModelError(f"{where}: a {data['kind']} model card, not a speaker-embedding one")
    kind, frontend = _frontend(data, where)
    partials, volume = _partials(data, where), _volume(data, where)
    onnx_path = (card_path.parent / _get(data, "file", str, where)).resolve()
    card = ModelCard(
        name=_get(data, "name", str, where),
        version=str(_get(data, "version", (str, int, float), where)),
        path=onnx_path,
        sha256=_get(data, "sha256", str, where),
        license=_get(data, "license", str, where),
        source=_get(data, "source", str, where),
        sample_rate=_get(data, "sample_rate", int, where),
        input_kind=kind,
        input_name=_get(data["input"], "name", str, f"{where}: input"),
        frontend=frontend,
        volume_norm_dbfs=volume,
        partials=partials,
        embedding_size=_get(data, "embedding_size", int, where),
        min_input_s=_get(data, "min_input_s", float, where),
        threshold=_get(data, "threshold", float, where),
        change_threshold=_optional(data, "change_threshold", float, where,
                                   _get(data, "threshold", float, where)),
        graph_optimization=_optional(data, "graph_optimization", str, where, "all"),
    )
    if card.graph_optimization not in GRAPH_OPTIMIZATIONS:
        raise ModelError(f"{where}: graph_optimization must be one of "
                         f"{', '.join(GRAPH_OPTIMIZATIONS)}, got {card.graph_optimization!r}")
    if card.sample_rate != 16000:
        raise ModelError(f"{where}: sample_rate {card.sample_rate} unsupported (only 16000)")
    if verify:
        verify_file(card)
    if calibration and data.get("calibration") is not None:
        card = replace(card, calibration=_calibration(card, card_path, data, where))
    return card


def load_segmentation_card(card_path: str | Path, verify: bool = True) -> SegmentationCard:
    """Parse and validate a ``kind: segmentation`` card; with ``verify``, check the sha256."""
    card_path = Path(card_path)
    where = str(card_path)
    data = _read(card_path, where)
    if data.get("kind") != "segmentation":
        raise ModelError(f"{where}: not a segmentation model card (no 'kind: segmentation')")
    inp, out = _get(data, "input", dict, where), _get(data, "output", dict, where)
    classes = _get(data, "powerset", list, where)
    if not all(isinstance(c, list) and all(isinstance(i, int) for i in c) for c in classes):
        raise ModelError(f"{where}: powerset must be a list of lists of speaker indices")
    card = SegmentationCard(
        name=_get(data, "name", str, where),
        version=str(_get(data, "version", (str, int, float), where)),
        path=(card_path.parent / _get(data, "file", str, where)).resolve(),
        sha256=_get(data, "sha256", str, where), license=_get(data, "license", str, where),
        source=_get(data, "source", str, where),
        sample_rate=_get(data, "sample_rate", int, where),
        input_name=_get(inp, "name", str, f"{where}: input"),
        output_name=_get(out, "name", str, f"{where}: output"),
        chunk_samples=round(_get(data, "chunk_s", float, where)
                            * _get(data, "sample_rate", int, where)),
        frames=_get(data, "frames", int, where),
        frame_start_s=_get(data, "frame_start_s", float, where),
        frame_step_s=_get(data, "frame_step_s", float, where),
        frame_duration_s=_get(data, "frame_duration_s", float, where),
        warm_up=_get(data, "warm_up", float, where),
        powerset=tuple(tuple(c) for c in classes),
        max_speakers_per_chunk=_get(data, "max_speakers_per_chunk", int, where),
    )
    if card.sample_rate != 16000:
        raise ModelError(f"{where}: sample_rate {card.sample_rate} unsupported (only 16000)")
    if any(i >= card.max_speakers_per_chunk for c in card.powerset for i in c):
        raise ModelError(f"{where}: a powerset class names a speaker beyond "
                         f"max_speakers_per_chunk ({card.max_speakers_per_chunk})")
    if verify:
        verify_file(card)
    return card


def verify_file(card: ModelCard | SegmentationCard) -> None:
    """Fail unless the ONNX file exists and has the sha256 the card records."""
    if not card.path.is_file():
        raise ModelError(f"model file {card.path} (named by the card of {card.name}) is missing")
    actual = sha256_of(card.path)
    if actual != card.sha256:
        raise ModelError(
            f"model file {card.path} has sha256 {actual}, but its card records {card.sha256}: "
            "the file is altered or the card is stale (rerun its weights/export*.py)"
        )


def weights_dir() -> Path:
    import vggvox_weights

    return Path(vggvox_weights.__file__).resolve().parent


def resolve_card(model: str | Path) -> Path:
    """A shipped model's name (``campplus``, ``ge2e``, ``segmentation-3.0``) or a path
    to any card."""
    key = str(model)
    if key in SHIPPED or key in SHIPPED_SEGMENTATION:
        return weights_dir() / {**SHIPPED, **SHIPPED_SEGMENTATION}[key]
    path = Path(key)
    if path.suffix in (".yaml", ".yml"):
        return path
    raise ModelError(
        f"unknown model {key!r}: use one of {sorted(SHIPPED)} or the path of a model card (.yaml)"
    )
