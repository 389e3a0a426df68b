"""The streaming pass over a whole recording: the daemon's Recognizer, fed from a file
as fast as it embeds, with every window's span and embedding kept.

A cache may hand the embeddings back (the same audio and window settings give the
same windows in the same order), so that a rerun embeds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.stream.recognizer import Recognizer
from vggvox.stream.results import Result
from vggvox.stream.segmenter import Pending, Window


@dataclass(frozen=True)
class WindowPass:
    """The streaming pass over a file: its results, and each window's span and embedding."""

    results: list[Result]
    starts: np.ndarray
    ends: np.ndarray
    embeddings: np.ndarray


def stream_pass(recognizer: Recognizer, audio: np.ndarray, block_s: float = 1.0,
                embeddings: np.ndarray | None = None) -> WindowPass:
    """Run ``audio`` through ``recognizer`` from sample 0. ``embeddings`` (a former
    pass's, of the same audio and settings) are used instead of the model."""
    recognizer.reset()
    block = max(1, round(block_s * SAMPLE_RATE))
    results: list[Result] = []
    spans: list[tuple[int, int]] = []
    embs: list[np.ndarray] = []

    def run(items: list[Pending]) -> None:
        windows = [i for i in items if isinstance(i, Window)]
        if embeddings is not None:
            if len(embs) + len(windows) > len(embeddings):
                raise ValueError("the cached embeddings do not match this audio")
            new = embeddings[len(embs):len(embs) + len(windows)]
        else:
            new = recognizer.embed(windows) if windows else np.zeros((0, 0), np.float32)
        it = iter(new)
        for item in items:
            emb = None
            if isinstance(item, Window):
                emb = np.asarray(next(it), dtype=np.float32)
                spans.append((item.start, item.end))
                embs.append(emb)
            results.extend(recognizer.decide(item, emb))

    for i in range(0, len(audio), block):
        run(recognizer.segment(audio[i:i + block]))
    run(recognizer.segment_end())
    if embeddings is not None and len(embs) != len(embeddings):
        raise ValueError("the cached embeddings do not match this audio")
    dim = recognizer.embedder.card.embedding_size
    span = np.array(spans, dtype=np.int64).reshape(-1, 2)
    return WindowPass(results, span[:, 0], span[:, 1],
                      np.stack(embs) if embs else np.zeros((0, dim), np.float32))
