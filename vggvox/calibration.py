"""Calibrated open-set decisions: a false-accept rate instead of a raw cosine.

A stranger is falsely accepted when their best score against the enrolled
voiceprints reaches the threshold. How often that happens depends on more than
the threshold: the shorter the evidence, the noisier its scores, and the more
speakers are enrolled, the more chances a stranger has to match one. A model's
calibration (``<model>.calibration.yaml`` beside its card, written by
``weights/calibrate_shipped.py``) models both:

- **Strangers.** A stranger's score against one voiceprint, for evidence of
  ``d`` seconds, has an upper tail shaped like a normal distribution with
  mean ``m0 + m1 ln d`` and spread ``s0 + s1 ln d`` (fitted to the tail, where
  false accepts happen, not to the bulk). Against ``n`` voiceprints a stranger
  gets ``n ** exponent`` independent-looking chances (scores against
  different voiceprints are correlated, so the exponent is fitted, not 1). So
  the threshold that accepts a fraction ``a`` of strangers is the tail
  quantile at ``q = 1 - (1 - a) ** (1 / n ** exponent)``.
- **Confidence.** The probability that the best enrolled speaker is the one
  speaking, ``sigmoid(c0 + c1 s + c2 ln d + c3 ln n + c4 s ln d)``: a logistic
  regression fitted on open-set decisions themselves (random shares of the
  fit speakers enrolled, each piece of evidence's best score among them), with
  equal prior odds of an enrolled speaker and a stranger.

Scores are cosine; a euclidean score of unit vectors is converted first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np
import yaml

from vggvox.errors import ModelError

_NORMAL = NormalDist()
Scores = TypeVar("Scores", float, np.ndarray)
"""One score, or an array of them (for one length of speech)."""
FALSE_ACCEPT_RANGE = (1e-6, 0.5)
"""The false-accept rates a user may ask for (config and command line alike)."""


@dataclass(frozen=True)
class Calibration:
    model: str
    """The card name it was fitted for."""
    fitted_on: str
    """Which speech, in words (and it is not the evaluation data)."""
    min_speech_s: float
    max_speech_s: float
    """Durations outside the fitted range are clamped to it."""
    nontarget_mean: tuple[float, float]
    nontarget_sd: tuple[float, float]
    exponent: float
    accept: tuple[float, float, float, float, float]
    path: Path | None = None

    # -- the two questions ------------------------------------------------------------

    def threshold(self, false_accept: float, speech_s: float, n_enrolled: int) -> float:
        """Cosine at and above which a stranger is accepted with probability ``false_accept``."""
        if not 0.0 < false_accept < 1.0:
            raise ValueError(f"false_accept must lie in (0, 1), got {false_accept}")
        chances = max(1, n_enrolled) ** self.exponent
        # 1 - (1 - a) ** (1 / c), written to stay exact for tiny rates.
        q = -math.expm1(math.log1p(-false_accept) / chances)
        mean, sd = self._tail(speech_s)
        return mean - sd * _NORMAL.inv_cdf(q)  # the upper q quantile, exact deep in the tail

    def false_accept(self, score: float, speech_s: float, n_enrolled: int) -> float:
        """The inverse: the share of strangers a threshold of ``score`` accepts."""
        mean, sd = self._tail(speech_s)
        q = _NORMAL.cdf((mean - score) / sd)
        chances = max(1, n_enrolled) ** self.exponent
        return -math.expm1(chances * math.log1p(-min(q, 1.0 - 1e-15)))

    def confidence(self, score: float, speech_s: float, n_enrolled: int) -> float:
        """Probability that the best enrolled speaker, at ``score``, is the one speaking."""
        c0, c1, c2, c3, c4 = self.accept
        ln_d = math.log(self._clamp(speech_s))
        z = c0 + c1 * score + c2 * ln_d + c3 * math.log(max(1, n_enrolled)) + c4 * score * ln_d
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    # -- helpers ----------------------------------------------------------------------------

    def z(self, cos: Scores, speech_s: float) -> Scores:
        """Strangers' scores (of one length) as standard units of the tail at that length
        (``vggvox.rooms`` gathers a room's evidence this way, so every length pools)."""
        mean, sd = self._tail(speech_s)
        return (cos - mean) / sd

    def sd(self, speech_s: float) -> float:
        """The tail's spread at this length: the unit of a room's shift."""
        return self._tail(speech_s)[1]

    def _clamp(self, speech_s: float) -> float:
        return min(max(speech_s, self.min_speech_s), self.max_speech_s)

    def _tail(self, speech_s: float) -> tuple[float, float]:
        ln_d = math.log(self._clamp(speech_s))
        mean = self.nontarget_mean[0] + self.nontarget_mean[1] * ln_d
        sd = self.nontarget_sd[0] + self.nontarget_sd[1] * ln_d
        return mean, max(sd, 1e-3)

    # -- file ---------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fitted_on": self.fitted_on,
            "speech_s": [self.min_speech_s, self.max_speech_s],
            "nontarget": {"mean": list(self.nontarget_mean), "sd": list(self.nontarget_sd)},
            "exponent": self.exponent,
            "accept": list(self.accept),
        }

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Calibration:
        try:
            lo, hi = (float(v) for v in raw["speech_s"])
            nt = raw["nontarget"]
            mean = tuple(float(v) for v in nt["mean"])
            sd = tuple(float(v) for v in nt["sd"])
            c = tuple(float(v) for v in raw["accept"])
            if len(c) != 5:
                raise ValueError("accept needs 5 coefficients")
            cal = cls(str(raw["model"]), str(raw["fitted_on"]), lo, hi,
                      (mean[0], mean[1]), (sd[0], sd[1]), float(raw["exponent"]),
                      (c[0], c[1], c[2], c[3], c[4]))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ModelError(f"{where}: not a calibration ({type(err).__name__}: {err})") from None
        if not 0 < lo < hi or cal.exponent <= 0:
            raise ModelError(f"{where}: speech_s must be 0 < lo < hi and exponent > 0")
        return cal

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ModelError(f"{path}: cannot read calibration: {err}") from None
        cal = cls.from_dict(raw, str(path))
        return Calibration(**{**cal.__dict__, "path": path})

    def save(self, path: Path, header: str = "") -> None:
        text = yaml.safe_dump(self.as_dict(), sort_keys=False, width=88)
        path.write_text(header + text)


def to_cosine(score: Scores, metric: str) -> Scores:
    """A euclidean score of unit vectors (minus their distance) as the equivalent cosine."""
    return score if metric == "cosine" else 1.0 - score * score / 2.0


def from_cosine(cos: float, metric: str) -> float:
    return cos if metric == "cosine" else -math.sqrt(max(0.0, 2.0 - 2.0 * cos))


@dataclass(frozen=True)
class AcceptRule:
    """When the best enrolled speaker's score names them: the one open-set rule.

    With ``threshold`` set, that raw score (in the metric's units) is the cutoff,
    whatever the evidence. Otherwise the model's calibration gives the cutoff
    that accepts a stranger with probability ``false_accept`` for this much
    speech and this many enrolled speakers; a model without a calibration
    falls back to ``fallback`` (its card's threshold).
    """

    false_accept: float = 0.005
    threshold: float | None = None
    calibration: Calibration | None = None
    fallback: float = 0.5
    metric: str = "cosine"
    shift: float = 0.0
    """How far this room's strangers score above the calibration's, in its tail's
    spreads (``vggvox.rooms`` measures it; never negative). The cutoff rises by
    ``shift * sd(d)``, and the confidence reads a score that much lower, so both
    agree with the room. 0: the calibration as fitted."""

    @property
    def calibrated(self) -> bool:
        return self.threshold is None and self.calibration is not None

    def cutoff(self, speech_s: float, n_enrolled: int) -> float:
        """Lowest score, in the metric's units, that names the best speaker."""
        if self.threshold is not None:
            return self.threshold
        if self.calibration is None:
            return self.fallback
        cos = self.calibration.threshold(self.false_accept, speech_s, n_enrolled)
        return from_cosine(self.raised(cos, speech_s), self.metric)

    def raised(self, cos: float, speech_s: float) -> float:
        """A cosine cutoff between voices (this rule's own, or the change detector's)
        raised as far as this room's strangers score above the calibration's, at this
        length."""
        if self.shift > 0.0 and self.calibration is not None:
            return cos + self.shift * self.calibration.sd(speech_s)
        return cos

    def judge(self, score: float, speech_s: float, n_enrolled: int) -> tuple[bool, float | None]:
        """Both answers for the best speaker's score, in one call: is it named, and the
        probability that the answer (named, or nobody) is right (None: no calibration)."""
        accept = score >= self.cutoff(speech_s, n_enrolled)
        p = self.confidence(score, speech_s, n_enrolled)
        return accept, None if p is None else p if accept else 1.0 - p

    def describe(self) -> str:
        """The rule in words (logs, status replies, reports)."""
        if self.threshold is not None:
            return f"raw threshold {self.threshold:g}"
        if self.calibration is None:
            return f"the card's threshold {self.fallback:.4g} (this model has no calibration)"
        words = f"calibrated to accept {100 * self.false_accept:g}% of strangers"
        if self.shift > 0.0:
            words += f", its cutoff raised {self.shift:.2f} sd for this room"
        return words

    def settings(self) -> dict[str, object]:
        """What was asked for, as report fields."""
        return {"false_accept_setting": None if self.threshold is not None
                else self.false_accept, "threshold_setting": self.threshold,
                "calibrated": self.calibrated}

    def confidence(self, score: float, speech_s: float, n_enrolled: int) -> float | None:
        """Probability that the best speaker at ``score`` is right (None: no calibration)."""
        if self.calibration is None:
            return None
        cos = to_cosine(score, self.metric)
        if self.shift > 0.0:
            cos -= self.shift * self.calibration.sd(speech_s)
        return self.calibration.confidence(cos, speech_s, n_enrolled)

