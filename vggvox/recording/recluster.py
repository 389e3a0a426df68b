"""Unknown voices re-clustered over a whole recording, with the calibrated merge rule.

The streaming pass labels unknown voices online: each turn joins the closest
cluster heard so far, or starts one, and a decision once made is never
revisited. Offline the whole file is known, so the turns that named nobody
are clustered again from scratch: agglomerative, each turn its own cluster at
first, then the closest pair merged again and again while its score reaches
the rule's cutoff. The rule is the one the streaming clusters use
(``unknowns.false_merge``: the calibrated probability that two voices are put
together), the stricter of the two sides' cutoffs (each read at its own speech,
with one comparison per other cluster), so a merge is as sure offline as
online, and turns too short to tell apart are merged only as far as their
evidence allows.

A cluster's centroid is the normalised sum of its turns' window embeddings: a
long turn weighs more than a short one, as its evidence does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vggvox.calibration import AcceptRule
from vggvox.scoring import l2_normalize


@dataclass(frozen=True)
class TurnEvidence:
    """One turn of the recording: the sum of its window embeddings and its speech."""

    total: np.ndarray
    windows: int
    speech_s: float


def cluster(turns: Sequence[TurnEvidence], rule: AcceptRule) -> list[int]:
    """The cluster of each turn, numbered 0, 1, ... in order of first appearance."""
    n = len(turns)
    if n == 0:
        return []
    totals = [t.total.astype(np.float64) for t in turns]
    speech = [t.speech_s for t in turns]
    members: list[list[int]] = [[i] for i in range(n)]
    alive = list(range(n))
    while len(alive) > 1:
        cents = np.stack([l2_normalize(totals[k]) for k in alive])
        scores = cents @ cents.T
        # Each side's cutoff for its speech, compared with every other cluster; a pair
        # must pass the stricter of the two.
        cut = np.array([rule.cutoff(speech[k], len(alive) - 1) for k in alive])
        margin = scores - np.maximum.outer(cut, cut)
        np.fill_diagonal(margin, -np.inf)
        i, j = np.unravel_index(int(np.argmax(margin)), margin.shape)
        if margin[i, j] < 0:
            break
        a, b = alive[min(i, j)], alive[max(i, j)]
        totals[a] = totals[a] + totals[b]
        speech[a] += speech[b]
        members[a] += members[b]
        alive.remove(b)
    label = np.empty(n, dtype=np.int64)
    order = sorted(alive, key=lambda k: min(members[k]))
    for number, k in enumerate(order):
        label[members[k]] = number
    return [int(x) for x in label]
