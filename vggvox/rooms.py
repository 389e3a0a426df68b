"""A room: how strangers score on one source's channel, and the rule that follows it.

The shipped calibration models a stranger's score against one voiceprint on a
mixture of sources, where most strangers come from another corpus. In one room
(one microphone, its acoustics, often the same words) strangers score higher,
and the calibrated false-accept rate stops holding. A ``Room`` measures how
much higher, from stranger scores heard on that channel:

- **enrolled** ("cold"): each enrollment clip recorded on the source, scored
  against the *other* speakers' voiceprints (``clip_evidence``);
- **heard** ("warm"): each turn the rule names with confidence >= ``CONFIDENT``,
  scored against the other voiceprints (``Room.heard``).

Each score is put in standard units of the shipped tail at its own length
(``Calibration.z``), so evidence of every length pools into one histogram. The room's
``shift`` is how far the top ``TAIL`` share of that evidence sits above the
standard normal, shrunk toward 0 with ``N0`` scores' weight and only from
``MIN_SCORES`` on (``fit_shift``). The adapted rule raises the cutoff by
``shift * sd(d)`` and never lowers it. The choice of estimator and its constants
is measured in ``docs/rooms.md`` (``bench/rooms_study.py``).

Bounded: a histogram of ``BINS`` counters per kind of evidence, at most
``MAX_OTHERS`` scores per turn, and a refit costs the same whatever the count
(at most ``SAMPLES`` quantiles per bin), done when the evidence has grown by a
tenth. Threads: the decider's owner calls ``heard``; the runtime calls
``enrolled``, ``reset``, ``state`` and ``summary`` from others: all hold one lock.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from vggvox.calibration import AcceptRule, Calibration

log = logging.getLogger(__name__)

TAIL = 0.2
"""Share of the highest stranger scores the shift is measured on."""
N0 = 10.0
"""Shrinkage: the shipped calibration weighs as much as this many scores."""
MIN_SCORES = 10
"""Below this many stranger scores the rule does not move."""
CONFIDENT = 0.99
"""A named turn is evidence only when the rule is at least this sure of it."""
MAX_OTHERS = 1000
"""Stranger scores taken from one turn (the first voiceprints but its own)."""
LO, WIDTH, BINS = -4.0, 0.05, 240
"""The histogram of z: 0.05 wide over [-4, 8); values outside go to the end bins."""
SAMPLES = 16
"""Plotting positions evaluated per bin (evenly spread over its ranks)."""
GROWTH = 1.1
"""Refit when the evidence has grown by this factor since the last fit."""
_NORMAL = NormalDist()


@dataclass
class Evidence:
    """Stranger scores on one channel, as a histogram of their z."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    speech_s: float = 0.0
    """Seconds of speech behind the scores (each clip or turn counted once)."""
    items: int = 0
    """Clips or turns they came from."""

    @property
    def scores(self) -> int:
        return int(self.counts.sum())

    def add(self, z: np.ndarray, speech_s: float) -> None:
        if not len(z):
            return
        bins = np.clip(((z - LO) / WIDTH).astype(np.int64), 0, BINS - 1)
        self.counts += np.bincount(bins, minlength=BINS)
        self.speech_s += speech_s
        self.items += 1

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(self.counts + other.counts, self.speech_s + other.speech_s,
                        self.items + other.items)

    def as_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero(self.counts)
        return {"bins": [[int(i), int(self.counts[i])] for i in nz],
                "speech_s": round(self.speech_s, 3), "items": self.items}

    @classmethod
    def from_dict(cls, raw: Any) -> Evidence:
        """The stored form back; ValueError when it is not one."""
        try:
            ev = cls(speech_s=float(raw["speech_s"]), items=int(raw["items"]))
            for i, c in raw["bins"]:
                if not 0 <= int(i) < BINS or int(c) < 0:
                    raise ValueError(f"bin {i} count {c} out of range")
                ev.counts[int(i)] = int(c)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a room's evidence ({err})") from None
        return ev


def fit_shift(counts: np.ndarray) -> float:
    """The room's shift, in tail spreads: the mean excess of the top ``TAIL`` share of
    z over the standard normal's quantiles at their plotting positions ((i - 0.5) / n),
    shrunk by n / (n + N0); 0 below ``MIN_SCORES`` and never negative."""
    n = int(counts.sum())
    if n < MIN_SCORES:
        return 0.0
    want = max(2, math.ceil(TAIL * n))
    excess, rank = 0.0, 0  # ranks are 1-based from the highest z
    for i in range(BINS - 1, -1, -1):
        c = min(int(counts[i]), want - rank)
        if c <= 0:
            continue
        ranks = np.unique(np.linspace(rank + 1, rank + c, min(c, SAMPLES)).round())
        expected = np.mean([_NORMAL.inv_cdf(1.0 - (r - 0.5) / n) for r in ranks])
        excess += c * (LO + (i + 0.5) * WIDTH - float(expected))
        rank += c
        if rank >= want:
            break
    return max(0.0, n / (n + N0) * excess / rank)


def clip_evidence(cal: Calibration, names: list[str], cosines: np.ndarray,
                  clips: list[tuple[str, float]]) -> Evidence:
    """Evidence from enrollment clips: row j of ``cosines`` holds clip j's cosine
    against each of ``names``' voiceprints, ``clips[j]`` its (speaker, seconds); the
    speaker's own column is left out."""
    ev = Evidence()
    for (speaker, seconds), row in zip(clips, cosines, strict=True):
        others = np.asarray([s for name, s in zip(names, row, strict=True) if name != speaker])
        ev.add(cal.z(others.astype(np.float64), seconds), seconds)
    return ev


class Room:
    """One source's adapted rule: the shipped ``base`` raised by what its channel shows.

    ``rule`` is the rule to decide with now: a plain attribute, replaced whole when
    the room moves, so a decision reads it without a lock.
    """

    def __init__(self, source: str, base: AcceptRule, adapt: bool = True,
                 heard: Evidence | None = None) -> None:
        self.source = source
        self.base = base
        self.adapts = adapt and base.calibrated
        """False: the rule is ``base`` for good (``scoring.adapt: false``, a raw
        threshold, or a model without a calibration)."""
        self._lock = threading.Lock()
        self._enrolled = Evidence()
        self._heard = heard if heard is not None and self.adapts else Evidence()
        self._fitted_at = 0
        self.version = 0
        """Bumped whenever the heard evidence changes (the runtime saves it then)."""
        self.rule = base
        with self._lock:
            self._refit()

    # -- evidence -------------------------------------------------------------------------

    def enrolled(self, evidence: Evidence) -> None:
        """Replace the enrollment evidence (the voiceprints changed)."""
        if self.adapts:
            with self._lock:
                self._enrolled = evidence
                self._refit()

    def heard(self, cosines: np.ndarray, speech_s: float) -> None:
        """A confidently named turn of ``speech_s`` seconds, and its cosines against the
        other voiceprints."""
        if not self.adapts or not len(cosines):
            return
        assert self.base.calibration is not None
        z = self.base.calibration.z(cosines[:MAX_OTHERS].astype(np.float64), speech_s)
        with self._lock:
            self._heard.add(z, speech_s)
            self.version += 1
            if self._total().scores >= GROWTH * self._fitted_at:
                self._refit()

    def reset(self) -> None:
        """Forget every piece of evidence: back to the base rule (until ``enrolled`` or
        ``heard`` bring more)."""
        with self._lock:
            self._heard = Evidence()
            self._enrolled = Evidence()
            self.version += 1
            self._refit()

    # -- reading --------------------------------------------------------------------------

    def state(self) -> tuple[int, dict[str, Any]]:
        """(version, the heard evidence to store)."""
        with self._lock:
            return self.version, self._heard.as_dict()

    def summary(self) -> dict[str, Any]:
        """The room for ``status`` and ``calibration show``: the rule brought up to date
        with all its evidence first (between refits it may be up to a tenth behind),
        so that what is shown is what a restart from the store would give."""
        with self._lock:
            if self.adapts and self._total().scores != self._fitted_at:
                self._refit()
            total, rule = self._total(), self.rule
            return {"rule": rule.describe(), "adapts": self.adapts,
                    "shift_sd": round(rule.shift, 3), "scores": total.scores,
                    "speech_s": round(total.speech_s, 1),
                    "enrolled_scores": self._enrolled.scores,
                    "heard_scores": self._heard.scores, "heard_turns": self._heard.items}

    # -- inside the lock ------------------------------------------------------------------

    def _total(self) -> Evidence:
        return self._enrolled + self._heard

    def _refit(self) -> None:
        total = self._total()
        self._fitted_at = total.scores
        shift = round(fit_shift(total.counts), 3) if self.adapts else 0.0
        if shift != self.rule.shift:
            log.info("source %s: open-set cutoff raised %.2f sd (was %.2f) from %d stranger "
                     "scores on %.0f s of this channel's speech", self.source, shift,
                     self.rule.shift, total.scores, total.speech_s)
            self.rule = replace(self.base, shift=shift)
