"""The embedder: one ONNX Runtime session per model, fed through its card's front-end
(its kind's feature function: ``vggvox.frontend_kinds``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vggvox.audio import SAMPLE_RATE
from vggvox.errors import InputTooShortError, ModelError
from vggvox.frontend import mean_normalize, normalize_volume
from vggvox.frontend_kinds import FrontEnd, network_input
from vggvox.modelcard import DEFAULT_MODEL, ModelCard, load_card, resolve_card
from vggvox.scoring import l2_normalize

__all__ = ["Embedder", "l2_normalize", "load_model"]

log = logging.getLogger(__name__)

# ONNX Runtime's own log goes to stderr with its own timestamps and colours, at no
# priority the journal understands; its warnings (an environment it cannot fully
# probe) are not the user's to act on. Errors still reach stderr.
ort.set_default_logger_severity(3)


class Embedder:
    """Turns 16 kHz mono float32 audio into unit-length speaker embeddings.

    Uses the CPU provider with explicit thread counts, so that several
    embedders (or worker processes) share a machine predictably.
    """

    def __init__(self, card: ModelCard, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.card = card
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[card.graph_optimization]
        try:
            self.session = ort.InferenceSession(
                str(card.path), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises several unrelated types
            raise ModelError(f"{card.path}: onnxruntime cannot load it: {e}") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if card.input_name not in inputs:
            raise ModelError(
                f"{card.path}: card names input {card.input_name!r}, the graph has {inputs}"
            )
        self.output_name = self.session.get_outputs()[0].name
        log.debug("loaded %s from %s (%d threads)", card.tag, card.path, threads)

    @classmethod
    def from_card(cls, model: str | Path, threads: int = 1) -> Embedder:
        """Load a shipped model by name, or any model by the path of its card."""
        return cls(load_card(resolve_card(model)), threads=threads)

    @property
    def tag(self) -> str:
        return self.card.tag

    def check_length(self, x: np.ndarray | int) -> None:
        """Refuse input (samples, or their number) shorter than the card's minimum."""
        seconds = (x if isinstance(x, int) else len(x)) / SAMPLE_RATE
        if seconds < self.card.min_input_s:
            raise InputTooShortError(seconds, self.card.min_input_s, self.card.name)

    def network_input(self, x: np.ndarray) -> np.ndarray:
        """One utterance's rows of network input: (1, T, bins) or (partials, samples)."""
        self.check_length(x)
        if self.card.volume_norm_dbfs is not None:
            x = normalize_volume(x, self.card.volume_norm_dbfs)
        return network_input(x, self.card)  # by the card's front-end kind

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.card.input_name: batch})[0]
        if not np.all(np.isfinite(out)):
            raise ModelError(f"{self.card.name} returned NaN or inf for a {batch.shape} input")
        return out

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embedding of one utterance, shape (embedding_size,), unit length."""
        return self.embed_batch([x])[0]

    def frames_input(self, frames: np.ndarray, n_samples: int) -> np.ndarray:
        """Network input from the raw fbank frames of a window of ``n_samples`` samples
        (a stream's FeatureTrack): the same as ``network_input`` of those samples."""
        fe = self.card.frontend
        if not isinstance(fe, FrontEnd) or self.card.volume_norm_dbfs is not None:
            raise ModelError(f"{self.card.name} cannot take precomputed fbank frames")
        self.check_length(n_samples)
        return (mean_normalize(frames) if fe.mean_norm else frames)[None]

    def embed_batch(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of several windows, shape (len(windows), embedding_size).

        Windows of equal length go through the network in one call; so do all
        the partials of a partials model.
        """
        return self.embed_inputs([self.network_input(np.asarray(w, dtype=np.float32))
                                  for w in windows])

    def embed_inputs(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings from prepared network inputs (``network_input``, ``frames_input``).

        Rows of one shape go through the network together: a batched row gives
        exactly the embedding it gives alone (``tests/test_features.py``), so
        batching is only ever by equal shape, never by padding.
        """
        out = np.empty((len(rows), self.card.embedding_size), dtype=np.float32)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(rows):
            by_shape.setdefault(r.shape[1:], []).append(i)
        for idx in by_shape.values():
            batch = np.concatenate([rows[i] for i in idx])
            emb = self._run(batch)
            # Partials of one window are averaged, then normalised (GE2E's rule).
            bounds = np.cumsum([0] + [len(rows[i]) for i in idx])
            for k, i in enumerate(idx):
                out[i] = emb[bounds[k] : bounds[k + 1]].mean(axis=0)
        return l2_normalize(out)


def load_model(model: str | Path = DEFAULT_MODEL, threads: int = 1) -> Embedder:
    """A speaker model ready to embed: a shipped one by name (``campplus``, the default,
    or ``ge2e``), or any model by the path of its card (checked against its sha256)."""
    return Embedder.from_card(model, threads=threads)
