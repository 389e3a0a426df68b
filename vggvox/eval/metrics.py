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
    return det_eer(det_curve(scores, labels))


def det_eer(d: Det) -> tuple[float, float]:
    """Where a DET curve's two rates meet (interpolated), and the threshold there."""
    diff = d.p_miss - d.p_fa  # rises as the threshold rises
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


# -- open set: strangers who are not enrolled, and enrolled speakers --------------------------


def open_set_curve(
    scores: np.ndarray, stranger_weight: np.ndarray, right_weight: np.ndarray,
    stranger_total: float, enrolled_total: float,
) -> Det:
    """The open-set trade-off of one raw threshold over best scores.

    Item i (a test utterance, a turn) is named when ``scores[i] >= threshold``;
    named, it accepts ``stranger_weight[i]`` of strangers (count or seconds) and
    names ``right_weight[i]`` of enrolled speakers rightly. Returned as a Det
    whose ``p_fa`` is the share of ``stranger_total`` accepted and ``p_miss`` the
    share of ``enrolled_total`` not named right (a wrong name, or none).
    """
    s = np.asarray(scores, dtype=np.float64)
    sw = np.asarray(stranger_weight, dtype=np.float64)
    rw = np.asarray(right_weight, dtype=np.float64)
    if stranger_total <= 0 or enrolled_total <= 0:
        raise ValueError("need both strangers and enrolled speakers")
    order = np.argsort(s, kind="mergesort")
    # Rejecting the i lowest scores: what they would have accepted is lost.
    rejected_strangers = np.concatenate([[0.0], np.cumsum(sw[order])])
    rejected_right = np.concatenate([[0.0], np.cumsum(rw[order])])
    thresholds = np.concatenate([s[order], [np.inf]])
    keep = np.concatenate([[True], np.diff(thresholds) > 0])
    p_fa = (sw.sum() - rejected_strangers) / stranger_total
    p_miss = 1.0 - (rw.sum() - rejected_right) / enrolled_total
    return Det(thresholds[keep], np.clip(p_miss[keep], 0, 1), np.clip(p_fa[keep], 0, 1))


def open_set_det(best_scores: np.ndarray, correct_top1: np.ndarray,
                 is_enrolled: np.ndarray) -> Det:
    """Open-set DET of test utterances: x strangers accepted, y enrolled not named right.

    ``correct_top1``: the best enrolled speaker is the one speaking (False for
    strangers); ``is_enrolled``: the one speaking is enrolled.
    """
    enrolled = np.asarray(is_enrolled, dtype=bool)
    right = enrolled & np.asarray(correct_top1, dtype=bool)
    return open_set_curve(best_scores, ~enrolled, right, float((~enrolled).sum()),
                          float(enrolled.sum()))


def det_min_total(d: Det) -> tuple[float, float]:
    """The lowest sum of the two rates, and the threshold that gives it."""
    total = d.p_miss + d.p_fa
    i = int(np.argmin(total))
    return float(total[i]), float(d.thresholds[i])


@dataclass(frozen=True)
class OpenSetPoint:
    """Counts at one operating point: what strangers and enrolled speakers were told."""

    n_strangers: int
    strangers_accepted: int
    n_enrolled: int
    """Test items of enrolled speakers."""
    enrolled_right: int
    enrolled_wrong: int
    """Named, as another enrolled speaker."""
    enrolled_missed: int
    """Not named (unknown)."""

    @property
    def false_accept_rate(self) -> float | None:
        return self.strangers_accepted / self.n_strangers if self.n_strangers else None

    def as_dict(self) -> dict[str, float | int | None]:
        def share(k: int) -> float | None:
            return k / self.n_enrolled if self.n_enrolled else None

        return {
            "false_accept_rate": self.false_accept_rate,
            "strangers_accepted": self.strangers_accepted,
            "n_strangers": self.n_strangers,
            "n_enrolled_tests": self.n_enrolled,
            "enrolled_right": self.enrolled_right,
            "enrolled_wrong": self.enrolled_wrong,
            "enrolled_missed": self.enrolled_missed,
            "enrolled_right_rate": share(self.enrolled_right),
            "enrolled_wrong_rate": share(self.enrolled_wrong),
            "enrolled_missed_rate": share(self.enrolled_missed),
        }


def open_set_point(best_scores: np.ndarray, correct_top1: np.ndarray, is_enrolled: np.ndarray,
                   cutoffs: np.ndarray | float) -> OpenSetPoint:
    """Counts when item i names its best speaker at ``best_scores[i] >= cutoffs[i]``."""
    s = np.asarray(best_scores, dtype=np.float64)
    named = s >= np.broadcast_to(np.asarray(cutoffs, dtype=np.float64), s.shape)
    enrolled = np.asarray(is_enrolled, dtype=bool)
    right = np.asarray(correct_top1, dtype=bool)
    return OpenSetPoint(
        n_strangers=int((~enrolled).sum()),
        strangers_accepted=int((named & ~enrolled).sum()),
        n_enrolled=int(enrolled.sum()),
        enrolled_right=int((named & enrolled & right).sum()),
        enrolled_wrong=int((named & enrolled & ~right).sum()),
        enrolled_missed=int((~named & enrolled).sum()),
    )


def open_set_trade_off(d: Det) -> dict[str, float | None]:
    """The best trade-off a curve allows: its equal-error point and lowest total."""
    rate, at = det_eer(d)
    total, total_at = det_min_total(d)

    def finite(v: float) -> float | None:
        return v if math.isfinite(v) else None  # JSON has no infinity

    return {"open_set_eer": rate, "open_set_eer_threshold": finite(at),
            "open_set_min_total": total, "open_set_min_total_threshold": finite(total_at)}


def plot_det(
    det: Det, path: str | Path, title: str, eer_value: float,
    xlabel: str = "false alarm rate (%)", ylabel: str = "miss rate (%)",
    point: tuple[float, float, str] | None = None,
) -> None:
    """Draw a DET curve on normal-deviate axes as a PNG.

    ``point`` marks one more (x rate, y rate, legend) on it: an operating point.
    """
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
    if point is not None:
        ax.plot([axis(np.array([point[0]]))[0]], [axis(np.array([point[1]]))[0]], "s",
                label=point[2])
    ax.set_xticks(axis(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(axis(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    lim = axis(np.array([0.0005, 0.5]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
