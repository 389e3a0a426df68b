"""Model cards and the committed ONNX files: hashes, reference embeddings, the pool fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml

from reference_signal import reference_signal
from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.errors import InputTooShortError, ModelError
from vggvox.modelcard import load_card, resolve_card, sha256_of

REFERENCE = Path(__file__).parent / "data" / "reference_embeddings.npz"
MODELS = ["campplus", "campplus-int8", "ge2e"]


@pytest.mark.parametrize("model", MODELS)
def test_committed_file_matches_card(model: str) -> None:
    card = load_card(resolve_card(model))
    assert sha256_of(card.path) == card.sha256
    assert card.license == "Apache-2.0"


@pytest.mark.parametrize("model", MODELS)
def test_known_embedding(model: str) -> None:
    emb = Embedder.from_card(model).embed(reference_signal())
    ref = np.load(REFERENCE)[model]
    assert emb.shape == ref.shape
    # int8 kernels differ a little between instruction sets (VNNI or not).
    assert float(emb @ ref) > (0.999 if model.endswith("int8") else 0.9999)


def test_int8_stays_close_to_fp32_on_real_speech(fixtures_dir: Path) -> None:
    """campplus-int8 (weights/quantize.py) against campplus on clips it was not
    calibrated on: the embeddings agree, whole and as the daemon's 2 s windows."""
    fp32, int8 = Embedder.from_card("campplus"), Embedder.from_card("campplus-int8")
    assert int8.card.sha256 != fp32.card.sha256  # so their stores never mix
    cos = []
    for clip in sorted(fixtures_dir.glob("*__*.wav")):
        x = load_audio(clip)
        for part in (x, x[:32000]):
            cos.append(float(fp32.embed(part) @ int8.embed(part)))
    # 1.1 gives 0.995 mean and 0.992 worst on these clips (1.0, the graph quantised as
    # exported: under 0.97 and 0.9).
    assert np.mean(cos) > 0.99 and min(cos) > 0.98, cos


def test_campplus_pools_divide_by_valid_count() -> None:
    # onnxruntime <= 1.28 mis-averages the last, partial ceil-mode window when
    # count_include_pad=1 (microsoft/onnxruntime#16203); the export sets 0.
    model = onnx.load(str(load_card(resolve_card("campplus")).path))
    pools = [n for n in model.graph.node if n.op_type == "AveragePool"]
    assert pools
    for node in pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("count_include_pad") == 0, node.name


def _copy_model(tmp_path: Path, model: str) -> Path:
    card = resolve_card(model)
    data = yaml.safe_load(card.read_text())
    shutil.copy(card.parent / data["file"], tmp_path / data["file"])
    shutil.copy(card, tmp_path / card.name)
    if data.get("calibration"):  # a card and the files it names travel together
        shutil.copy(card.parent / data["calibration"], tmp_path / data["calibration"])
    return tmp_path / card.name


def test_any_model_with_a_card_loads_by_path(tmp_path: Path) -> None:
    card = _copy_model(tmp_path, "ge2e")
    emb = Embedder.from_card(card).embed(reference_signal())
    assert float(emb @ np.load(REFERENCE)["ge2e"]) > 0.9999


def test_altered_file_is_refused(tmp_path: Path) -> None:
    card = _copy_model(tmp_path, "ge2e")
    onnx_file = tmp_path / "ge2e.onnx"
    blob = bytearray(onnx_file.read_bytes())
    blob[-10] ^= 0xFF
    onnx_file.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="ge2e.onnx has sha256 .* but its card records"):
        load_card(card)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    card = _copy_model(tmp_path, "ge2e")
    (tmp_path / "ge2e.onnx").unlink()
    with pytest.raises(ModelError, match="ge2e.onnx .* is missing"):
        load_card(card)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("embedding_size"), "missing key 'embedding_size'"),
        (lambda d: d.update(threshold="high"), "key 'threshold' must be"),
        (lambda d: d["input"].update(kind="spectrogram"), "input.kind must be one of"),
        (lambda d: d.update(sample_rate=8000), "sample_rate 8000 unsupported"),
        (lambda d: d.update(graph_optimization="fast"), "graph_optimization must be one of"),
    ],
)
def test_bad_card_names_the_key(tmp_path: Path, edit, message: str) -> None:
    card = _copy_model(tmp_path, "ge2e")
    data = yaml.safe_load(card.read_text())
    edit(data)
    card.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelError, match=message):
        load_card(card)


def test_unknown_model_name() -> None:
    with pytest.raises(ModelError, match="unknown model 'vggvox1'"):
        resolve_card("vggvox1")


@pytest.mark.parametrize("model", MODELS)
def test_too_short_is_a_clear_error_not_nan(model: str) -> None:
    embedder = Embedder.from_card(model)
    with pytest.raises(InputTooShortError, match="0.050 s, shorter than"):
        embedder.embed(reference_signal()[:800])


@pytest.mark.parametrize("model", MODELS)
def test_batch_equals_one_by_one(model: str) -> None:
    embedder = Embedder.from_card(model)
    x = reference_signal(6.0)
    windows = [x[:32000], x[16000:48000], x[32000:64000], x[:40000]]
    batch = embedder.embed_batch(windows)
    for w, b in zip(windows, batch, strict=True):
        assert float(embedder.embed(w) @ b) > 0.9999


def test_threads_setting() -> None:
    embedder = Embedder(load_card(resolve_card("campplus")), threads=2)
    assert embedder.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match="threads"):
        Embedder(load_card(resolve_card("campplus")), threads=0)
