"""weights/segmask.py: CAM++'s masks at segment rate compute what the exported graph does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from reference_signal import reference_signal
from vggvox.audio import load_audio
from vggvox.frontend import kaldi_fbank
from vggvox.modelcard import load_card, resolve_card

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from weights import segmask  # a maintainer's tool, beside the models

CARD = load_card(resolve_card("campplus"))


def _session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def both() -> tuple[ort.InferenceSession, ort.InferenceSession, onnx.ModelProto]:
    model = onnx.load(str(CARD.path))
    assert segmask.rewrite(model) == 52  # every CAM layer of CAM++
    onnx.checker.check_model(model)
    return _session(str(CARD.path)), _session(model), model


def _agree(a: np.ndarray, b: np.ndarray) -> None:
    # Equal up to the order of a GEMM's sums (1 column against 100).
    assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max()


@pytest.mark.parametrize("seconds", [0.2, 1.0, 2.0, 2.01, 2.02, 3.5, 12.0])
def test_the_rewrite_computes_the_same_embedding(both, seconds: float) -> None:
    """Lengths below, at and past a 100-frame segment (2 s = 100 frames after the head's
    stride), and many segments; a batch of two differs in content, not length."""
    exported, rewritten, _ = both
    x = reference_signal(seconds=max(seconds, 3.0))[: int(seconds * 16000)]
    feats = kaldi_fbank(x, CARD.frontend)[None].astype(np.float32)
    batch = np.concatenate([feats, feats[:, ::-1].copy()])
    for f in (feats, batch):
        _agree(exported.run(None, {CARD.input_name: f})[0],
               rewritten.run(None, {CARD.input_name: f})[0])


def test_the_rewrite_on_real_speech(both, fixtures_dir: Path) -> None:
    exported, rewritten, _ = both
    for clip in sorted(fixtures_dir.glob("*__*.wav")):
        feats = kaldi_fbank(load_audio(clip), CARD.frontend)[None].astype(np.float32)
        _agree(exported.run(None, {CARD.input_name: feats})[0],
               rewritten.run(None, {CARD.input_name: feats})[0])


def test_the_rewrite_drops_the_repetition_and_its_shape_nodes(both) -> None:
    _, _, model = both
    before = onnx.load(str(CARD.path))
    ops = [n.op_type for n in model.graph.node]
    assert "Expand" not in ops and "Where" not in ops
    assert len(ops) < len(before.graph.node) / 3
    assert len(segmask.mask_convs(model)) == 2 * 52


def test_the_shipped_int8_model_is_made_from_the_rewrite() -> None:
    int8 = onnx.load(str(load_card(resolve_card("campplus-int8")).path))
    ops = [n.op_type for n in int8.graph.node]
    assert "Expand" not in ops
    assert any(n.name.endswith("_over_frames") for n in int8.graph.node)


def test_a_graph_without_cam_layers_is_refused() -> None:
    ge2e = onnx.load(str(load_card(resolve_card("ge2e")).path))
    with pytest.raises(ValueError, match="no CAM segment pooling"):
        segmask.rewrite(ge2e)
