"""EER, minDCF, DET and identification accuracy on cases worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vggvox.eval.metrics import det_curve, eer, identification_accuracy, min_dcf, plot_det


def test_perfect_separation() -> None:
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    labels = np.array([1, 1, 0, 0])
    rate, thr = eer(scores, labels)
    assert rate == 0.0 and 0.2 <= thr <= 0.8
    assert min_dcf(scores, labels, 0.01) == 0.0


def test_one_error_each_side() -> None:
    # Targets 0.9 0.8 0.3 0.7; non-targets 0.6 0.2 0.1 0.75: one miss and one
    # false alarm at any threshold in (0.3, 0.6] -> EER 25 %.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.1, 0.75])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    rate, _ = eer(scores, labels)
    assert rate == pytest.approx(0.25)
    d = det_curve(scores, labels)
    assert d.p_miss[0] == 0 and d.p_fa[0] == 1 and d.p_miss[-1] == 1 and d.p_fa[-1] == 0


def test_min_dcf_normalisation() -> None:
    # Worst case: the best the system can do is to accept or reject everything.
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    labels = np.array([0, 0, 1, 1])[::-1]  # targets have the lowest scores
    assert min_dcf(scores, labels, 0.01) == pytest.approx(1.0)


def test_identification_accuracy() -> None:
    acc = identification_accuracy([1, 1, 2, 3, 30], n_speakers=280)
    # top-1% of 280 = ceil(2.8) = 3 candidates; top-5% = 14; top-10% = 28.
    assert acc == {"top1": 0.4, "top1pct": 0.8, "top5pct": 0.8, "top10pct": 0.8}
    assert math.isclose(identification_accuracy([1, 2], 10)["top1pct"], 0.5)


def test_det_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(1, 0.5, 200), rng.normal(0, 0.5, 200)])
    labels = np.array([1] * 200 + [0] * 200)
    rate, _ = eer(scores, labels)
    out = tmp_path / "det.png"
    plot_det(det_curve(scores, labels), out, "test", rate)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
