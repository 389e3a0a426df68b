"""Scoring a live speaker-identification timeline against RTTM truth.

The system under test gives two things for a conversation: its FINAL turns
(what it ended up saying about each stretch of time) and EVERY decision it
published along the way (to measure how fast it reacted). The definitions,
as published:

- **Truth label** at time t: the speaker's name if enrolled, else ``unknown``
  (any stranger). **Output label** at t: the label of the final turn covering
  t (the later-starting one if turns overlap), ``unknown`` if that turn's label
  is None, ``none`` if no turn covers t.
- **Scored time**: truth speech time minus a collar of ``collar`` seconds on
  each side of every truth segment boundary, evaluated on a grid of ``step``
  seconds (point k stands for ``[k*step, (k+1)*step)`` and is read at its
  middle). Time where truth segments overlap is not scored.
- **Identification error rate** (ier): scored time where output != truth,
  over scored time. It splits into **missed** (output ``none``) and
  **confusion** (a wrong enrolled name, or ``unknown`` for an enrolled speaker,
  or a name for a stranger).
- **Stranger false-accept rate**: scored stranger time labelled with a name
  (not ``unknown``, not ``none``), over scored stranger time; None without strangers.
- **Turn accuracy**: a true turn is a maximal run of consecutive truth
  segments with the same truth label. It is right when the output label that
  covers most of its scored time (all its speech time if none is scored) is its
  truth label, strictly ahead of any other label.
- **Flicker**: output label changes over true label changes. True changes are
  those between consecutive true turns. Output changes: the final turns sorted
  by start, consecutive pairs with different labels (gaps don't count: A, gap,
  A is no change; A, gap, B is one).
- **Delay after a change**: for a true change at tau into label X whose turn
  lasts until tau2, the first decision (smallest ``at``) with label X (None
  matches ``unknown``), an interval overlapping (tau, tau2) and ``at >= tau``;
  delay = at - tau. Without one, the change is missed. Reported: median and
  90th percentile of the delays, and the number of missed changes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vggvox.recording.rttm import Segment

UNKNOWN = "unknown"
NONE = "none"


@dataclass(frozen=True)
class Labelled:
    """A final turn of the system: ``label`` None means not an enrolled speaker."""

    start: float
    end: float
    label: str | None


@dataclass(frozen=True)
class Decision:
    """One published turn update, decided at stream time ``at`` (usually ``end``)."""

    at: float
    start: float
    end: float
    label: str | None


@dataclass(frozen=True)
class TrueTurn:
    start: float
    end: float
    label: str
    segments: tuple[Segment, ...]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(frozen=True)
class ConversationScore:
    """Raw times and counts of one or more conversations; the rates derive from them."""

    speech_s: float
    scored_s: float
    error_s: float
    missed_s: float
    confusion_s: float
    stranger_s: float
    stranger_fa_s: float
    n_turns: int
    n_turns_right: int
    true_changes: int
    output_changes: int
    delays: tuple[float, ...]
    missed_changes: int
    n_conversations: int = 1

    @property
    def ier(self) -> float | None:
        return _ratio(self.error_s, self.scored_s)

    @property
    def stranger_fa_rate(self) -> float | None:
        return _ratio(self.stranger_fa_s, self.stranger_s)

    @property
    def turn_accuracy(self) -> float | None:
        return _ratio(self.n_turns_right, self.n_turns)

    @property
    def flicker(self) -> float | None:
        return _ratio(self.output_changes, self.true_changes)

    @property
    def delay_median(self) -> float | None:
        return float(np.median(self.delays)) if self.delays else None

    @property
    def delay_p90(self) -> float | None:
        return float(np.percentile(self.delays, 90)) if self.delays else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delays"] = list(self.delays)
        for name in ("ier", "stranger_fa_rate", "turn_accuracy", "flicker",
                     "delay_median", "delay_p90"):
            d[name] = getattr(self, name)
        return d


def truth_label(speaker: str, enrolled: set[str] | frozenset[str]) -> str:
    return speaker if speaker in enrolled else UNKNOWN


def output_label(label: str | None) -> str:
    return UNKNOWN if label is None else label


def true_turns(truth: Iterable[Segment], enrolled: set[str] | frozenset[str]) -> list[TrueTurn]:
    """Maximal runs of consecutive truth segments (by start) with the same truth label."""
    turns: list[TrueTurn] = []
    for seg in sorted(truth, key=lambda s: (s.start, s.end)):
        label = truth_label(seg.speaker, enrolled)
        if turns and turns[-1].label == label:
            last = turns[-1]
            turns[-1] = TrueTurn(last.start, max(last.end, seg.end), label,
                                 (*last.segments, seg))
        else:
            turns.append(TrueTurn(seg.start, seg.end, label, (seg,)))
    return turns


class Grid:
    """Points at the middles of ``step``-second cells from 0 to ``end``."""

    def __init__(self, end: float, step: float) -> None:
        if step <= 0:
            raise ValueError("step must be > 0")
        self.step = step
        self.n = math.ceil(round(end / step, 6)) + 1

    def span(self, a: float, b: float) -> slice:
        """The points whose middle lies in [a, b)."""
        # Rounding first keeps 10.25 / 0.01 from landing one point off.
        k0 = math.ceil(round(a / self.step - 0.5, 6))
        k1 = math.ceil(round(b / self.step - 0.5, 6))
        return slice(min(max(k0, 0), self.n), min(max(k1, 0), self.n))


def scored_truth(truth: Sequence[Segment], enrolled: set[str] | frozenset[str],
                 end: float, collar: float, step: float
                 ) -> tuple[Grid, np.ndarray, np.ndarray]:
    """The grid, each point's truth label ("" where nobody speaks) and the scored
    points (one truth speaker, outside every collar): the module's definitions."""
    grid = Grid(end + collar, step)
    cover = np.zeros(grid.n, dtype=np.int32)
    labels = np.full(grid.n, "", dtype=object)
    for seg in truth:
        sl = grid.span(seg.start, seg.end)
        cover[sl] += 1
        labels[sl] = truth_label(seg.speaker, enrolled)
    in_collar = np.zeros(grid.n, dtype=bool)
    for seg in truth:
        for b in (seg.start, seg.end):
            in_collar[grid.span(b - collar, b + collar)] = True
    return grid, labels, (cover == 1) & ~in_collar


def _output_changes(turns: Sequence[Labelled]) -> int:
    labels = [output_label(t.label) for t in sorted(turns, key=lambda t: (t.start, t.end))]
    return sum(a != b for a, b in itertools.pairwise(labels))


def _delays(tturns: Sequence[TrueTurn], decisions: Sequence[Decision]) -> tuple[list[float], int]:
    delays: list[float] = []
    missed = 0
    for turn in tturns[1:]:
        ats = [d.at for d in decisions
               if output_label(d.label) == turn.label and d.start < turn.end
               and d.end > turn.start and d.at >= turn.start]
        if ats:
            delays.append(min(ats) - turn.start)
        else:
            missed += 1
    return delays, missed


def score_conversation(
    truth: list[Segment],
    enrolled: set[str] | frozenset[str],
    turns: list[Labelled],
    decisions: list[Decision],
    collar: float = 0.25,
    step: float = 0.01,
) -> ConversationScore:
    """Score one conversation; the definitions are in this module's docstring."""
    end = max([s.end for s in truth] + [t.end for t in turns] + [0.0])
    grid, labels, scored = scored_truth(truth, enrolled, end, collar, step)
    codes: dict[str, int] = {NONE: 0, UNKNOWN: 1}

    def code(label: str) -> int:
        return codes.setdefault(label, len(codes))

    # Truth labels as codes (-1 where nobody speaks), one lookup per distinct label.
    distinct, where = np.unique(labels.astype(str), return_inverse=True)
    ref = np.array([code(lab) if lab else -1 for lab in distinct], dtype=np.int32)[where]

    hyp = np.zeros(grid.n, dtype=np.int32)
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        hyp[grid.span(t.start, t.end)] = code(output_label(t.label))

    wrong = scored & (hyp != ref)
    stranger = scored & (ref == codes[UNKNOWN])
    named = hyp > codes[UNKNOWN]

    tturns = true_turns(truth, enrolled)
    right = 0
    for turn in tturns:
        mask = np.zeros(grid.n, dtype=bool)
        for seg in turn.segments:
            mask[grid.span(seg.start, seg.end)] = True
        if (mask & scored).any():
            mask &= scored
        counts = np.bincount(hyp[mask], minlength=len(codes))
        want = codes[turn.label]
        others = np.delete(counts, want)
        right += int(counts[want] > 0 and counts[want] > others.max(initial=0))

    delays, missed_changes = _delays(tturns, decisions)
    return ConversationScore(
        speech_s=float((labels != "").sum() * step),
        scored_s=float(scored.sum() * step),
        error_s=float(wrong.sum() * step),
        missed_s=float((wrong & (hyp == codes[NONE])).sum() * step),
        confusion_s=float((wrong & (hyp != codes[NONE])).sum() * step),
        stranger_s=float(stranger.sum() * step),
        stranger_fa_s=float((stranger & named).sum() * step),
        n_turns=len(tturns),
        n_turns_right=right,
        true_changes=max(len(tturns) - 1, 0),
        output_changes=_output_changes(turns),
        delays=tuple(delays),
        missed_changes=missed_changes,
    )


def combine(scores: Sequence[ConversationScore]) -> ConversationScore:
    """Pool several conversations: times and counts add, so rates are time-weighted."""
    if not scores:
        raise ValueError("combine needs at least one score")
    return ConversationScore(
        speech_s=sum(s.speech_s for s in scores),
        scored_s=sum(s.scored_s for s in scores),
        error_s=sum(s.error_s for s in scores),
        missed_s=sum(s.missed_s for s in scores),
        confusion_s=sum(s.confusion_s for s in scores),
        stranger_s=sum(s.stranger_s for s in scores),
        stranger_fa_s=sum(s.stranger_fa_s for s in scores),
        n_turns=sum(s.n_turns for s in scores),
        n_turns_right=sum(s.n_turns_right for s in scores),
        true_changes=sum(s.true_changes for s in scores),
        output_changes=sum(s.output_changes for s in scores),
        delays=tuple(d for s in scores for d in s.delays),
        missed_changes=sum(s.missed_changes for s in scores),
        n_conversations=sum(s.n_conversations for s in scores),
    )
