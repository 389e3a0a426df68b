"""Scoring: cosine and euclidean, top-k, voiceprints."""

from __future__ import annotations

import numpy as np
import pytest

from vggvox.embedder import l2_normalize
from vggvox.scoring import Scorer, voiceprint


def test_cosine_and_euclidean_rank_alike() -> None:
    rng = np.random.default_rng(1)
    prints = l2_normalize(rng.standard_normal((50, 16)))
    q = l2_normalize(prints[7] + 0.1 * rng.standard_normal(16))
    cos = Scorer("cosine").scores(q, prints)
    euc = Scorer("euclidean").scores(q, prints)
    assert cos.shape == euc.shape == (50,)
    assert int(np.argmax(cos)) == int(np.argmax(euc)) == 7
    # For unit vectors |q - v|^2 = 2 - 2 cos.
    np.testing.assert_allclose(euc, -np.sqrt(np.maximum(2 - 2 * cos, 0)), atol=1e-5)


def test_batch_scores_match_single() -> None:
    rng = np.random.default_rng(2)
    prints = l2_normalize(rng.standard_normal((20, 8)))
    qs = l2_normalize(rng.standard_normal((5, 8)))
    s = Scorer()
    batch = s.scores(qs, prints)
    assert batch.shape == (5, 20)
    np.testing.assert_allclose(batch[3], s.scores(qs[3], prints), atol=1e-6)


def test_top_k_best_first() -> None:
    names = ["a", "b", "c", "d"]
    top = Scorer.top_k(np.array([0.1, 0.9, 0.5, 0.7]), names, 3)
    assert [m.name for m in top] == ["b", "d", "c"]
    assert Scorer.top_k(np.array([0.1]), ["a"], 5)[0].name == "a"
    assert Scorer.top_k(np.array([]), [], 5) == []


def test_voiceprint_is_normalised_mean() -> None:
    e = l2_normalize(np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(voiceprint(e), [2**-0.5, 2**-0.5], atol=1e-6)


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        Scorer("manhattan")
