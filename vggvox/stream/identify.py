"""Who a piece of evidence belongs to: the decision rule behind every label.

The turn decider hands an ``Evidence`` (the normalised sum of a turn's window
embeddings, how much speech it holds, what each window said alone) to an
``Identifier`` and gets an ``Identity`` back. This module's
``ThresholdIdentifier`` accepts the best enrolled speaker at or above a fixed
score. A calibrated rule, or one that clusters unknown voices, is another
class with the same ``identify`` method: the decider does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vggvox.scoring import Match
from vggvox.voiceprints import VoiceprintSet


@dataclass(frozen=True)
class Evidence:
    embedding: np.ndarray
    """Unit length: one window's embedding, or a turn's normalised sum of them."""
    speech_s: float
    """Seconds of audio behind it (the span its windows cover)."""
    windows: int = 1
    window_labels: tuple[str | None, ...] = ()
    """What each window of a turn said on its own (empty for a single window)."""


@dataclass(frozen=True)
class Identity:
    speaker: str | None
    """An enrolled speaker, or None."""
    unknown: str | None = None
    """The label of an unknown-voice cluster, or None (this rule never sets it)."""
    score: float = 0.0
    """Score of the best enrolled speaker, accepted or not (0.0 with none enrolled)."""
    confidence: float = 0.0
    """How sure the rule is of ``speaker`` (or of "nobody enrolled"), in [0, 1]."""
    top: list[Match] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str | None]:
        """What a label change compares."""
        return self.speaker, self.unknown


class Identifier(Protocol):
    def identify(self, evidence: Evidence) -> Identity: ...


class ThresholdIdentifier:
    """The best enrolled speaker if their score reaches ``threshold``, else nobody.

    ``confidence`` is not a calibrated probability: it is the share of the
    turn's windows that, scored alone, gave the same answer as the turn (1.0
    for a single window). It says how consistent the evidence is.
    """

    def __init__(self, voiceprints: VoiceprintSet, threshold: float, top_k: int = 5) -> None:
        self.voiceprints = voiceprints
        self.threshold = threshold
        self.top_k = top_k

    def identify(self, evidence: Evidence) -> Identity:
        top = self.voiceprints.search(evidence.embedding, self.top_k)
        best = top[0] if top else None
        speaker = best.name if best is not None and best.score >= self.threshold else None
        labels = evidence.window_labels
        agree = sum(1 for w in labels if w == speaker) / len(labels) if labels else 1.0
        return Identity(speaker=speaker, score=best.score if best else 0.0,
                        confidence=agree, top=top)
