"""Make ``campplus-int8``: CAM++ with int8 convolutions (static QDQ), and its card.

    .venv/bin/python weights/quantize.py            # quantise, write the card, check it
    .venv/bin/python weights/quantize.py --check    # only the check against fp32

Needs the runtime dependencies plus ``onnx`` (a test extra of ``make test``), and the
development speech (``../shared/data/speech``; ``--speech`` elsewhere). A maintainer's
tool like export.py: never imported at run time, and not in the wheel.

Why static QDQ on the Conv nodes only: a 2 s window of CAM++ is 1.1 GMAC, nearly
all of it in convolutions; onnxruntime's int8 kernels (VNNI on x86) run them at
about half the fp32 time, and everything else stays fp32, so the rest of the graph
(pooling, statistics, the dense head) keeps fp32 accuracy.

Before quantising, weights/segmask.py rewrites the fp32 graph so that the CAM
layers' masks are computed per 100-frame segment (the same function, 3,102 nodes
down to 876). Its mask convolutions then see a column or two and stay fp32: as int8
they cost more in quantise/dequantise nodes than they save. ReLU is quantised with
the convolutions so that onnxruntime fuses each Conv+ReLU into one int8 kernel
instead of dequantising and requantising between them.

Calibration data must be public speech that no evaluation uses: the 102 FSDD digit
strings of ``manifest.csv`` that are in neither ``split.csv`` (the enroll and test
lists) nor ``trials.txt``. They are band-limited (8 kHz originals) and all male, so
they are a narrow sample of voices: the check below (on everything else) says
whether that was enough. Activation ranges come from 2 s windows (the daemon's)
and whole files (the offline modes), with the MinMax method; the fixed seed and
sorted file order make a rerun give the same file.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "vggvox_weights"  # the package: the models and their cards
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from vggvox.audio import SAMPLE_RATE, load_audio  # noqa: E402
from vggvox.embedder import Embedder  # noqa: E402
from vggvox.frontend import kaldi_fbank  # noqa: E402
from vggvox.modelcard import load_card, sha256_of  # noqa: E402
from weights import segmask  # noqa: E402

SPEECH = HERE.parent.parent / "shared" / "data" / "speech"
SOURCE_CARD = MODELS / "campplus.yaml"
OUT = MODELS / "campplus-int8.onnx"
CARD = MODELS / "campplus-int8.yaml"
REFERENCE = HERE.parent / "tests" / "data" / "reference_embeddings.npz"
WINDOW_S = 2.0
VERSION = "1.1"
KEEP_FP32 = ("/head/conv1/Conv", "/xvector/dense/linear/Conv")
"""Convolutions left fp32: the first sees the fbank features themselves, the last makes
the embedding from the pooled statistics (one column); both cost nothing in time."""


def calibration_files(speech: Path) -> list[Path]:
    """The manifest's files that no list or trial of the evaluation names."""
    with (speech / "manifest.csv").open() as f:
        manifest = [row["path"] for row in csv.DictReader(f)]
    with (speech / "split.csv").open() as f:
        used = {row["path"] for row in csv.DictReader(f)}
    for line in (speech / "trials.txt").read_text().splitlines():
        used.update(line.split()[1:])
    return [speech / p for p in sorted(manifest) if p not in used]


class FbankReader(CalibrationDataReader):
    """Network inputs for the calibration: each file whole, and one 2 s window of it."""

    def __init__(self, files: list[Path], input_name: str) -> None:
        fe = load_card(SOURCE_CARD).frontend
        self.input_name = input_name
        rng = np.random.default_rng(0)
        self.inputs: list[np.ndarray] = []
        for f in files:
            x = load_audio(f)
            n = int(WINDOW_S * SAMPLE_RATE)
            start = int(rng.integers(0, max(1, len(x) - n)))
            for clip in (x, x[start:start + n]):
                self.inputs.append(kaldi_fbank(clip, fe)[None].astype(np.float32))
        self._it: Iterator[np.ndarray] = iter(self.inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        feats = next(self._it, None)
        return None if feats is None else {self.input_name: feats}


def quantize(speech: Path) -> list[Path]:
    files = calibration_files(speech)
    card = load_card(SOURCE_CARD)
    model = onnx.load(str(card.path))
    print(f"segmask: {segmask.rewrite(model)} CAM layers' masks at segment rate", flush=True)
    print(f"calibrating on {len(files)} files not used by any evaluation", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rewritten = Path(tmp) / "campplus-segmask.onnx"
        onnx.save(model, str(rewritten))
        quantize_static(
            str(rewritten), str(OUT), FbankReader(files, card.input_name),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "Relu"],
            nodes_to_exclude=[*segmask.mask_convs(model), *KEEP_FP32], per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return files


CARD_EDITS = [
    # Its own calibration, fitted by weights/calibrate_shipped.py --model campplus-int8.
    ("calibration: campplus.calibration.yaml", "calibration: campplus-int8.calibration.yaml"),
    # onnxruntime's 'all' level adds layout transforms under which an int8 graph gives
    # a window a slightly different embedding alone than in a batch (cosine 0.998).
    ("\ninput:", "\n# 'extended', not 'all': batched windows then equal one by one.\n"
                 "graph_optimization: extended\ninput:"),
    ("# shared/data/speech trials (README, \"Accuracy\").",
     "# shared/data/speech trials, fp32's; int8's is 0.48 (docs/accuracy.md)."),
]


def write_card(files: list[Path]) -> None:
    """The int8 card: the fp32 card's contract, its own file, hash and provenance."""
    keep = SOURCE_CARD.read_text().split("\npaper:", 1)[1]  # paper, input, front-end...
    for old, new in CARD_EDITS:
        assert old in keep, old
        keep = keep.replace(old, new, 1)
    speakers = sorted({f.parent.name for f in files})
    CARD.write_text(f"""\
# Model card: CAM++ with int8 convolutions, made by weights/quantize.py from campplus.onnx.
name: campplus-int8
version: "{VERSION}"
file: {OUT.name}
sha256: {sha256_of(OUT)}
description: >-
  campplus.onnx (CAM++, 3D-Speaker) with its CAM masks computed per segment
  (weights/segmask.py: the same function) and static int8 quantisation of its
  Conv and ReLU nodes but the masks' (QDQ, per-channel int8 weights, uint8
  activations, MinMax ranges); everything else stays fp32. 1.0 quantised the
  graph as exported: its voiceprints are not this file's. Accuracy against
  fp32: docs/accuracy.md.
source: >-
  weights/vggvox_weights/campplus.onnx (sha256 {sha256_of(SOURCE_CARD.parent / 'campplus.onnx')}),
  rewritten by weights/segmask.py and quantised with
  onnxruntime.quantization.quantize_static. Calibration data:
  {len(files)} FSDD digit strings of ../shared/data/speech that no list or trial of
  the evaluation uses (speakers {', '.join(speakers)}), each whole and as one 2 s window.
paper:{keep}""")
    print(f"{CARD.name}: sha256 {sha256_of(OUT)}")


def dev_files(speech: Path) -> list[Path]:
    """The enroll and test lists' files (split.csv): speech calibration never saw."""
    with (speech / "split.csv").open() as f:
        return [speech / row["path"] for row in csv.DictReader(f)]


def check_rewrite(speech: Path) -> None:
    """The segment-rate rewrite against the graph as exported, both fp32, on real speech."""
    card = load_card(SOURCE_CARD)
    model = onnx.load(str(card.path))
    segmask.rewrite(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(m, options, providers=["CPUExecutionProvider"])
                for m in (str(card.path), model.SerializeToString())]
    paths = dev_files(speech)[::5]
    worst, cos = 0.0, []
    for p in paths:
        feats = kaldi_fbank(load_audio(p), card.frontend)[None].astype(np.float32)
        a, b = (s.run(None, {card.input_name: feats})[0][0] for s in sessions)
        worst = max(worst, float(np.abs(a - b).max() / np.abs(a).max()))
        cos.append(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    print(f"segmask rewrite against the exported fp32 graph, {len(paths)} files: largest "
          f"difference {worst:.1e} of the largest value, worst cosine {min(cos):.7f}")


def write_reference() -> None:
    """The test suite's reference embedding of int8 (tests/test_models.py)."""
    sys.path.insert(0, str(REFERENCE.parent.parent))
    from reference_signal import reference_signal  # tests/reference_signal.py

    refs = dict(np.load(REFERENCE))
    refs[CARD.stem] = Embedder(load_card(CARD, calibration=False)).embed(reference_signal())
    np.savez(REFERENCE, **refs)
    print(f"{REFERENCE.name}: {CARD.stem} updated")


def check(speech: Path) -> None:
    """Cosine of int8 to fp32 embeddings on real speech that calibration never saw."""
    # The int8 calibration file is written after this, by calibrate.py: not read here.
    fp32, int8 = Embedder.from_card(SOURCE_CARD), Embedder(load_card(CARD, calibration=False))
    paths = dev_files(speech)
    for seconds in (2.0, 3.0, 10.0, None):
        cos = []
        for p in paths if seconds is None else paths[::5]:  # windows: every fifth file
            x = load_audio(p)
            if seconds is not None:
                if len(x) < seconds * SAMPLE_RATE:
                    continue
                x = x[: int(seconds * SAMPLE_RATE)]
            cos.append(float(fp32.embed(x) @ int8.embed(x)))
        what = f"{seconds:g} s windows" if seconds else "whole files"
        print(f"cosine int8 to fp32, {what} ({len(cos)}): mean {np.mean(cos):.4f}, "
              f"worst {np.min(cos):.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare with fp32")
    ap.add_argument("--speech", type=Path, default=SPEECH, help="the development speech")
    args = ap.parse_args()
    if not (args.speech / "manifest.csv").exists():
        print(f"quantize: no development speech at {args.speech}", file=sys.stderr)
        return 2
    if not args.check:
        write_card(quantize(args.speech))
        write_reference()
    check_rewrite(args.speech)
    check(args.speech)
    return 0


if __name__ == "__main__":
    sys.exit(main())
