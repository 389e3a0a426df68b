"""The front-end kinds' registry (vggvox.frontend_kinds): the shipped cards' kinds, what a
kind declares, and a new kind added to the table alone, which a card then names and the
embedder runs, with no other module changed. Fast: the shipped models only, no data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from reference_signal import reference_signal
from vggvox import frontend_kinds
from vggvox.embedder import Embedder
from vggvox.errors import ModelError
from vggvox.frontend import kaldi_fbank, partial_windows
from vggvox.frontend_kinds import KINDS, FrontEnd, FrontEndKind, FrontEndParams, InGraph
from vggvox.modelcard import ModelCard, load_card, resolve_card
from vggvox.stream.features import FeatureTrack


def test_the_shipped_cards_kinds() -> None:
    assert list(KINDS) == ["kaldi_fbank", "in_graph"]
    assert frontend_kinds.input_kinds() == ("features", "waveform")
    for model, params, input_kind in [("campplus", FrontEnd, "features"),
                                      ("campplus-int8", FrontEnd, "features"),
                                      ("ge2e", InGraph, "waveform")]:
        card = load_card(resolve_card(model))
        assert type(card.frontend) is params
        assert card.input_kind == KINDS[card.frontend.type].input_kind == input_kind


def test_each_kinds_rows_are_its_feature_function() -> None:
    x = reference_signal()[:40000]
    campplus, ge2e = load_card(resolve_card("campplus")), load_card(resolve_card("ge2e"))
    assert isinstance(campplus.frontend, FrontEnd) and ge2e.partials is not None
    assert np.array_equal(frontend_kinds.network_input(x, campplus),
                          kaldi_fbank(x, campplus.frontend)[None])
    assert np.array_equal(frontend_kinds.network_input(x, ge2e), partial_windows(x, ge2e.partials))
    whole = replace(ge2e, partials=None)
    assert np.array_equal(frontend_kinds.network_input(x, whole), x[None].astype(np.float32))


@dataclass(frozen=True)
class Halved(FrontEndParams):
    """A made-up kind: CAM++'s fbank of the signal at half its level, plus an offset that
    mean normalisation takes away again (so the embedding must equal CAM++'s)."""

    offset: float = 0.0
    bins: int = 80


def _halved_rows(x: np.ndarray, fe: Halved, card: ModelCard) -> np.ndarray:
    feats = kaldi_fbank(0.5 * x, FrontEnd("kaldi_fbank", num_mel_bins=fe.bins, mean_norm=False))
    return (feats + fe.offset - (feats + fe.offset).mean(axis=0))[None]


def _card(tmp_path: Path, frontend: dict[str, Any]) -> Path:
    shipped = resolve_card("campplus")
    data = yaml.safe_load(shipped.read_text())
    data.update(file=str((shipped.parent / data["file"]).resolve()), frontend=frontend,
                calibration=None)
    path = tmp_path / "halved.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def halved(monkeypatch: pytest.MonkeyPatch) -> FrontEndKind[Halved]:
    kind = FrontEndKind("halved", "features", Halved, _halved_rows)
    monkeypatch.setitem(KINDS, kind.name, kind)
    return kind


def test_a_new_kind_is_one_entry_in_the_table(tmp_path: Path,
                                              halved: FrontEndKind[Halved]) -> None:
    card = load_card(_card(tmp_path, {"type": "halved", "offset": 3.5, "description": "x"}))
    assert card.frontend == Halved("halved", offset=3.5)
    x = reference_signal()[:48000]
    ours = Embedder(card).embed(x)
    theirs = Embedder.from_card("campplus").embed(x)
    assert float(ours @ theirs) > 0.9999
    # A stream shares Kaldi frames between windows only for the kaldi_fbank kind.
    assert FeatureTrack.for_card(card) is None
    assert FeatureTrack.for_card(load_card(resolve_card("campplus"))) is not None
    with pytest.raises(ModelError, match="cannot take precomputed fbank frames"):
        Embedder(card).frames_input(np.zeros((10, 80), np.float32), 16000)


def test_a_kinds_fields_are_checked(tmp_path: Path, halved: FrontEndKind[Halved]) -> None:
    with pytest.raises(ModelError, match="frontend: .*unexpected keyword argument 'shift'"):
        load_card(_card(tmp_path, {"type": "halved", "shift": 2}))
    with pytest.raises(ModelError, match="frontend.type must be one of "
                                         r"\('kaldi_fbank', 'in_graph', 'halved'\)"):
        load_card(_card(tmp_path, {"type": "mfcc"}))
    with pytest.raises(ModelError, match="input.kind 'features' does not fit frontend.type "
                                         "'in_graph'"):
        load_card(_card(tmp_path, {"type": "in_graph"}))


def test_another_kinds_fields_are_ignored_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before the kinds, every card had one set of front-end fields, Kaldi's: a waveform
    card that still carries some loads as it did, and the log says they mean nothing."""
    shipped = resolve_card("ge2e")
    data = yaml.safe_load(shipped.read_text())
    data.update(file=str((shipped.parent / data["file"]).resolve()), calibration=None,
                frontend={"type": "in_graph", "num_mel_bins": 40, "window": "hann"})
    path = tmp_path / "ge2e.yaml"
    path.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING, logger="vggvox.modelcard"):
        card = load_card(path)
    assert card.frontend == InGraph("in_graph")
    assert "num_mel_bins, window mean nothing to in_graph (ignored)" in caplog.text
