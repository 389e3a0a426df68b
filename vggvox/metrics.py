"""Evaluation metrics: identification accuracy, EER, minDCF and DET curves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

# Accuracy at top-1 and at the top 1 %, 5 % and 10 % of the enrolled speakers
# (VGGVox real-time port).
TOP_FRACTIONS = {"top1pct": 0.01, "top5pct": 0.05, "top10pct": 0.10}


def top_k_for(fraction: float, n_speakers: int) -> int:
    """How many best candidates 'top-x %' allows: at least one."""
    return max(1, math.ceil(fraction * n_speakers))


def identification_accuracy(ranks: list[int], n_speakers: int) -> dict[str, float]:
    """Fractions of test utterances whose true speaker ranks within each cut-off.

    ``ranks`` are 1-based ranks of the correct speaker among ``n_speakers``.
    """
    r = np.asarray(ranks)
    if r.size == 0:
        return {"top1": 0.0, **{k: 0.0 for k in TOP_FRACTIONS}}
    out = {"top1": float(np.mean(r <= 1))}
    for key, frac in TOP_FRACTIONS.items():
        out[key] = float(np.mean(r <= top_k_for(frac, n_speakers)))
    return out


@dataclass(frozen=True)
class Det:
    """Miss and false-alarm rates at every threshold, thresholds ascending."""

    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray


def det_curve(scores: np.ndarray, labels: np.ndarray) -> Det:
    """Rates when accepting every score >= threshold, for each distinct threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_tar, n_non = int(labels.sum()), int((~labels).sum())
    if n_tar == 0 or n_non == 0:
        raise ValueError("need both target and non-target trials")
    order = np.argsort(scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    # Rejecting the i lowest scores: misses are the targets among them.
    misses = np.concatenate([[0], np.cumsum(lab)])
    false_alarms = n_non - np.concatenate([[0], np.cumsum(~lab)])
    thresholds = np.concatenate([s, [np.inf]])
    # Keep one point per distinct threshold (ties are accepted or rejected together).
    keep = np.concatenate([[True], np.diff(thresholds) > 0])
    return Det(thresholds[keep], misses[keep] / n_tar, false_alarms[keep] / n_non)


def eer(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Equal error rate (as a fraction) and the threshold where it is reached."""
    d = det_curve(scores, labels)
    diff = d.p_miss - d.p_fa  # rises from -1 to +1 as the threshold rises
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(d.p_fa[0]), float(d.thresholds[0])
    # Interpolate between the two points that straddle p_miss == p_fa.
    a, b = diff[i - 1], diff[i]
    w = -a / (b - a) if b != a else 0.0
    rate = d.p_miss[i - 1] + w * (d.p_miss[i] - d.p_miss[i - 1])
    t_hi = d.thresholds[i] if np.isfinite(d.thresholds[i]) else d.thresholds[i - 1]
    return float(rate), float(d.thresholds[i - 1] + w * (t_hi - d.thresholds[i - 1]))


def min_dcf(
    scores: np.ndarray, labels: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Minimum normalised detection cost (NIST SRE / VoxCeleb definition)."""
    d = det_curve(scores, labels)
    cost = c_miss * p_target * d.p_miss + c_fa * (1 - p_target) * d.p_fa
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def plot_det(det: Det, path: str | Path, title: str, eer_value: float) -> None:
    """Draw a DET curve on normal-deviate axes as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probit = NormalDist().inv_cdf
    eps = 1e-4

    def axis(p: np.ndarray) -> np.ndarray:
        return np.array([probit(min(max(v, eps), 1 - eps)) for v in p])

    ticks = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(axis(det.p_fa), axis(det.p_miss), lw=1.5)
    ax.plot([axis(np.array([eer_value]))[0]], [axis(np.array([eer_value]))[0]], "o",
            label=f"EER {100 * eer_value:.2f} %")
    ax.set_xticks(axis(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(axis(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    lim = axis(np.array([0.0005, 0.5]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
