"""Which remembered voice each unknown voice of a recording is (``provisional.py``).

Calibrated like the daemon's unknown clusters (``stream/unknowns.py``): a heard
voice is a remembered one when their score reaches the rule's cutoff for the
heard voice's speech (the evidence; the remembered voice plays the voiceprint)
against as many candidates as there are remembered voices (each is one more
chance for a new voice to be taken for an old one). Best pairs first, and each
remembered voice is given to one heard voice at most: two voices of one
recording, kept apart there, stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vggvox.calibration import AcceptRule, from_cosine
from vggvox.scoring import l2_normalize


class Remembered(Protocol):
    @property
    def centroid(self) -> np.ndarray: ...


@dataclass(frozen=True)
class HeardVoice:
    """One unknown voice of a recording, as ``identify`` found it."""

    total: np.ndarray
    """Sum of its window embeddings (each unit length)."""
    windows: int
    speech_s: float
    start: float
    end: float

    @property
    def centroid(self) -> np.ndarray:
        return l2_normalize(np.asarray(self.total, dtype=np.float32))


def assign(voices: Sequence[Remembered], centroids: np.ndarray | Sequence[np.ndarray],
           speech_s: Sequence[float], rule: AcceptRule) -> list[int | None]:
    """For each heard centroid, the index of the remembered voice it is (None: new):
    pairs at or above the rule's cutoff, best score first, each voice taken once."""
    heard = [l2_normalize(np.asarray(c, dtype=np.float32)) for c in centroids]
    if len(heard) != len(speech_s):
        raise ValueError("one speech duration per centroid")
    picks: list[int | None] = [None] * len(heard)
    if not voices or not heard:
        return picks
    scores = np.stack(heard) @ np.stack([v.centroid for v in voices]).T
    cutoffs = [rule.cutoff(d, len(voices)) for d in speech_s]
    pairs = []
    for i, j in zip(*np.nonzero(np.isfinite(scores)), strict=True):
        score = from_cosine(float(scores[i, j]), rule.metric)
        if score >= cutoffs[i]:
            pairs.append((score, int(i), int(j)))
    taken: set[int] = set()
    for _, i, j in sorted(pairs, key=lambda p: -p[0]):
        if picks[i] is None and j not in taken:
            picks[i] = j
            taken.add(j)
    return picks
