"""Scoring embeddings against enrolled voiceprints, in one vectorised operation.

Embeddings are unit length. ``cosine`` scores are dot products in [-1, 1];
``euclidean`` scores are negated distances in [-2, 0], so that for both
metrics a higher score means a closer voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("cosine", "euclidean")


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """Unit length along the last axis (a zero vector stays zero)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


def voiceprint(embeddings: np.ndarray) -> np.ndarray:
    """A speaker's voiceprint: the normalised mean of their enrollment embeddings."""
    embeddings = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
    if embeddings.shape[0] == 0:
        raise ValueError("a voiceprint needs at least one embedding")
    return l2_normalize(l2_normalize(embeddings).mean(axis=0))


@dataclass(frozen=True)
class Match:
    """One candidate speaker and its score."""

    name: str
    score: float


class Scorer:
    """Scores query embeddings against a matrix of voiceprints."""

    def __init__(self, metric: str = "cosine") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric

    def scores(self, queries: np.ndarray, voiceprints: np.ndarray) -> np.ndarray:
        """Scores of shape (queries, voiceprints); 1-D queries give a 1-D result."""
        q = np.asarray(queries, dtype=np.float32)
        single = q.ndim == 1
        q = np.atleast_2d(q)
        v = np.atleast_2d(np.asarray(voiceprints, dtype=np.float32))
        if v.shape[0] == 0:
            out = np.zeros((q.shape[0], 0), dtype=np.float32)
        elif self.metric == "cosine":
            out = q @ v.T
        else:
            # |q - v|^2 = |q|^2 + |v|^2 - 2 q.v, without a (Q, N, D) temporary.
            sq = (q * q).sum(1)[:, None] + (v * v).sum(1)[None, :] - 2.0 * (q @ v.T)
            out = -np.sqrt(np.maximum(sq, 0.0))
        return out[0] if single else out

    def pair(self, a: np.ndarray, b: np.ndarray) -> float:
        """Score of one pair of embeddings (verification trials)."""
        return float(self.scores(a, np.atleast_2d(b))[0])

    @staticmethod
    def top_k(scores: np.ndarray, names: list[str], k: int) -> list[Match]:
        """The k best speakers for one query, best first."""
        k = min(k, len(names))
        if k <= 0:
            return []
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [Match(names[i], float(scores[i])) for i in idx]
