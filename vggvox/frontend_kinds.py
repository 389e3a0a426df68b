"""Front-end kinds: what a model card's ``frontend.type`` may name, in one table.

A kind is all the runtime knows of one way from 16 kHz samples to a network's input:

- ``name``: its name in a card (``frontend.type``);
- ``input_kind``: the graph input it feeds, which the card's ``input.kind`` must
  say: ``features`` (frames x bins) or ``waveform`` (samples);
- ``params``: its card fields, a frozen dataclass of the keys of the card's
  ``frontend:`` section (``type`` among them; ``description`` is for people);
- ``rows``: its feature function: one utterance's samples (already raised to the
  card's ``preprocess.volume_norm_dbfs``, where it names one) -> that utterance's
  rows of network input, which ``Embedder.embed_inputs`` batches by shape.

The kinds:

- ``kaldi_fbank`` (CAM++): Kaldi log-mel filterbank frames computed by the runtime
  (``vggvox.frontend``), mean-normalised per utterance; a stream computes each frame
  once for all its windows (``vggvox.stream.features``);
- ``in_graph`` (GE2E): the graph computes its features itself (GE2E's power mel
  spectrogram); it takes the waveform whole, or cut into the card's ``partials``.

``modelcard.load_card`` (which fields, which input) and the ``Embedder`` (which rows)
ask this table and nothing else: a model family with a front-end of its own is its
params class and its function here, one line in ``KINDS``, and a card naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from vggvox.frontend import kaldi_fbank, partial_windows

if TYPE_CHECKING:
    from vggvox.modelcard import ModelCard


@dataclass(frozen=True)
class FrontEndParams:
    """What every kind's card fields have: the kind's name."""

    type: str


@dataclass(frozen=True)
class FrontEnd(FrontEndParams):
    """``kaldi_fbank``'s card fields: Kaldi fbank, as kaldi-native-fbank (and
    torchaudio.compliance.kaldi) compute it."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "povey"
    preemphasis: float = 0.97
    dither: float = 0.0
    mean_norm: bool = True
    """Subtract each bin's mean over the utterance (per-utterance CMN)."""


@dataclass(frozen=True)
class InGraph(FrontEndParams):
    """``in_graph``: no fields; the graph computes its own features."""


P = TypeVar("P", bound=FrontEndParams)


@dataclass(frozen=True)
class FrontEndKind(Generic[P]):
    """One front-end kind (the module's docstring says what each field means)."""

    name: str
    input_kind: str
    params: type[P]
    rows: Callable[[np.ndarray, P, ModelCard], np.ndarray]

    def field_names(self) -> set[str]:
        return {f.name for f in fields(self.params)}


def _kaldi_rows(x: np.ndarray, fe: FrontEnd, card: ModelCard) -> np.ndarray:
    return kaldi_fbank(x, fe)[None]  # (1, frames, bins)


def _in_graph_rows(x: np.ndarray, fe: InGraph, card: ModelCard) -> np.ndarray:
    if card.partials is not None:  # (partials, samples): averaged after the network
        return partial_windows(x, card.partials)
    return np.asarray(x, dtype=np.float32)[None]


KINDS: dict[str, FrontEndKind[Any]] = {k.name: k for k in (
    FrontEndKind("kaldi_fbank", "features", FrontEnd, _kaldi_rows),
    FrontEndKind("in_graph", "waveform", InGraph, _in_graph_rows),
)}
"""Every front-end kind, by the name a card gives it."""



def input_kinds() -> tuple[str, ...]:
    """The graph inputs the kinds feed, as a card's ``input.kind`` names them."""
    return tuple(sorted({k.input_kind for k in KINDS.values()}))


def network_input(x: np.ndarray, card: ModelCard) -> np.ndarray:
    """One utterance's rows of network input, by its card's front-end kind."""
    return KINDS[card.frontend.type].rows(x, card.frontend, card)


def foreign_keys(kind: FrontEndKind[Any], keys: set[str]) -> set[str]:
    """Those of ``keys`` that are another kind's fields, not this one's: a card of this
    kind may carry them (they were once one set of fields for every kind); ignored."""
    others = set().union(*(k.field_names() for k in KINDS.values() if k is not kind))
    return (keys - kind.field_names()) & others
