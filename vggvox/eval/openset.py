"""Open-set figures: strangers accepted against enrolled speakers not named right.

Two questions at once: how often a stranger (not enrolled) is given a name,
and how often an enrolled speaker is not given their own. An operating point
answers both for the decisions a system made (an ``AcceptRule``: a calibrated
false-accept rate, or a raw threshold); the trade-off curve shows every point
one raw threshold over the best scores allows (``vggvox.eval.metrics.open_set_curve``).

For a conversation (``conversation_open_set``) both are shares of scored time,
as ``vggvox.eval.timeline`` defines it (same grid, collar and overlap rule):

- **strangers accepted**: stranger time labelled with a name (timeline's
  ``stranger_fa_rate``);
- **enrolled miss**: enrolled speakers' time not labelled with their own name
  (a wrong name, ``unknown``, or no turn at all).

The curve relabels each final turn: its best enrolled speaker when the turn's
best score reaches the threshold, else unknown. Turns stay as the engine cut
them, so the curve is of the labels, not of a rerun with another threshold
(which could also change when hysteresis lets a label switch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggvox.calibration import FALSE_ACCEPT_RANGE, AcceptRule
from vggvox.errors import VggvoxError
from vggvox.eval.metrics import Det, det_eer, open_set_curve, open_set_trade_off, plot_det
from vggvox.eval.timeline import UNKNOWN, scored_truth
from vggvox.modelcard import ModelCard
from vggvox.recording.rttm import Segment
from vggvox.stream.recognizer import ScoringConfig
from vggvox.stream.results import Result, TurnUpdate

# -- the rule, from a user's options ---------------------------------------------------------


def check_false_accept(rate: float | None) -> None:
    lo, hi = FALSE_ACCEPT_RANGE
    if rate is not None and not lo <= rate <= hi:
        raise VggvoxError(f"--false-accept must be {lo:g}..{hi:g}, got {rate}")


def accept_rule(card: ModelCard, metric: str = "cosine", false_accept: float | None = None,
                threshold: float | None = None) -> AcceptRule:
    """The AcceptRule of ``--false-accept`` / ``--threshold`` (one-line error on a bad rate)."""
    check_false_accept(false_accept)
    rate = ScoringConfig.false_accept if false_accept is None else false_accept
    return ScoringConfig(rate, threshold).rule(card, metric)


def plot_open_set(det: Det, path: str | Path, title: str, fa: float | None,
                  miss: float | None) -> None:
    """The open-set DET curve, its equal-error point, and the operating point (fa, miss)."""
    point = None
    if fa is not None and miss is not None:
        point = (fa, miss, f"operating point {100 * fa:.2f} / {100 * miss:.2f} %")
    plot_det(det, path, title, det_eer(det)[0], xlabel="strangers accepted (%)",
             ylabel="enrolled not named right (%)", point=point)


# -- a conversation --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredTurn:
    """A final turn: the label given, and its best enrolled speaker and score."""

    start: float
    end: float
    label: str | None
    best: str | None
    score: float


def final_turns(results: Iterable[Result]) -> list[ScoredTurn]:
    out = []
    for r in results:
        if isinstance(r, TurnUpdate) and r.final:
            # ``top`` is on the final evidence; ``score`` may be a held label's.
            best = r.top[0] if r.top else None
            out.append(ScoredTurn(r.t_start, r.t_end, r.speaker, best.name if best else None,
                                  best.score if best else -np.inf))
    return out


@dataclass(frozen=True)
class ConversationOpenSet:
    """Scored seconds at the operating point, and the curve of one raw threshold."""

    stranger_s: float
    stranger_named_s: float
    enrolled_s: float
    enrolled_right_s: float
    enrolled_wrong_s: float
    """Labelled with another enrolled speaker's name."""
    enrolled_unknown_s: float
    enrolled_none_s: float
    """No turn covers it."""
    det: Det | None
    """None without both stranger and enrolled scored time."""

    @property
    def stranger_fa_rate(self) -> float | None:
        return self.stranger_named_s / self.stranger_s if self.stranger_s > 0 else None

    @property
    def enrolled_miss_rate(self) -> float | None:
        return 1.0 - self.enrolled_right_s / self.enrolled_s if self.enrolled_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: round(v, 3) for k, v in self.__dict__.items() if k != "det"}
        d["stranger_fa_rate"] = self.stranger_fa_rate
        d["enrolled_miss_rate"] = self.enrolled_miss_rate
        if self.det is not None:
            d.update(open_set_trade_off(self.det))
        return d


def conversation_open_set(truth: Sequence[Segment], enrolled: set[str] | frozenset[str],
                          turns: Sequence[ScoredTurn], collar: float = 0.25,
                          step: float = 0.01) -> ConversationOpenSet:
    """Both shares at the turns' labels, and the curve of relabelling them by score."""
    end = max([s.end for s in truth] + [t.end for t in turns] + [0.0])
    # The scored time, exactly as timeline.score_conversation defines it.
    grid, speaker, scored = scored_truth(truth, enrolled, end, collar, step)
    stranger = scored & (speaker == UNKNOWN)
    mine = scored & ~stranger

    # Which final turn covers each point: the later-starting one where they overlap.
    owner = np.full(grid.n, -1, dtype=np.int64)
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, turns[i].end))
    for i in order:
        owner[grid.span(turns[i].start, turns[i].end)] = i
    # Per-turn values, with a last entry for "no turn" (owner -1).
    label = np.array([t.label for t in turns] + [None], dtype=object)[owner]
    best = np.array([t.best for t in turns] + [None], dtype=object)[owner]
    named = np.array([t.label is not None for t in turns] + [False])[owner]
    covered = owner >= 0

    # Per turn, what naming its best speaker would add: stranger time, right time.
    stranger_w = np.bincount(owner[stranger & covered], minlength=len(turns)) * step
    right_w = np.bincount(owner[mine & covered & (best == speaker)],
                          minlength=len(turns)) * step
    stranger_s, enrolled_s = float(stranger.sum() * step), float(mine.sum() * step)
    det = None
    if turns and stranger_s > 0 and enrolled_s > 0:
        det = open_set_curve(np.array([t.score for t in turns]), stranger_w, right_w,
                             stranger_s, enrolled_s)
    return ConversationOpenSet(
        stranger_s=stranger_s,
        stranger_named_s=float((stranger & named).sum() * step),
        enrolled_s=enrolled_s,
        enrolled_right_s=float((mine & named & (label == speaker)).sum() * step),
        enrolled_wrong_s=float((mine & named & (label != speaker)).sum() * step),
        enrolled_unknown_s=float((mine & covered & ~named).sum() * step),
        enrolled_none_s=float((mine & ~covered).sum() * step),
        det=det,
    )
