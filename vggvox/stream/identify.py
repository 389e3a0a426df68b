"""Who a piece of evidence belongs to: the decision rule behind every label.

The turn decider hands an ``Evidence`` (the normalised sum of a turn's window
embeddings, how much speech it holds, what each window said alone) to an
``Identifier`` and gets an ``Identity`` back. This module's
``OpenSetIdentifier`` accepts the best enrolled speaker when an ``AcceptRule``
says so (a calibrated false-accept rate, or a raw score). Another rule is
another class with the same ``identify`` method: the decider does not change.
Unknown voices are clustered by the decider (``unknowns.py``), not here: that
needs the turn's history. The rule itself is a ``Room``'s (``vggvox.rooms``): the
calibrated rule as this source's channel has moved it, from the evidence that
``learn`` hands it when a turn closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vggvox.calibration import AcceptRule, to_cosine
from vggvox.rooms import CONFIDENT, Room
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
    """The label of an unknown-voice cluster (set by the decider), or None."""
    score: float = 0.0
    """Score of the best enrolled speaker, accepted or not (0.0 with none enrolled)."""
    confidence: float = 0.0
    """How sure the rule is of ``speaker`` (or of "nobody enrolled"), in [0, 1]:
    a calibrated probability when the model has a calibration."""
    top: list[Match] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str | None]:
        """What a label change compares."""
        return self.speaker, self.unknown


class Identifier(Protocol):
    def identify(self, evidence: Evidence) -> Identity: ...

    def learn(self, evidence: Evidence, identity: Identity) -> None:
        """A turn closed with this evidence and answer (a rule that adapts learns here)."""


class OpenSetIdentifier:
    """The best enrolled speaker if their score reaches the rule's cutoff, else nobody.

    The cutoff comes from an ``AcceptRule``: calibrated for the evidence's
    length and the number of enrolled speakers (a false-accept rate), or one
    raw score. ``confidence`` is the calibrated probability that the answer is
    right: that the named speaker is speaking, or for "nobody", that the best
    match is not. Without a calibration it falls back to the share of the
    turn's windows that, scored alone, said the same (1.0 for one window).
    """

    def __init__(self, voiceprints: VoiceprintSet, rule: AcceptRule | Room,
                 top_k: int = 5) -> None:
        self.voiceprints = voiceprints
        self.room = rule if isinstance(rule, Room) else Room("", rule, adapt=False)
        """Where the rule comes from: fixed, or adapting to the source's channel."""
        self.top_k = top_k

    @property
    def rule(self) -> AcceptRule:
        return self.room.rule

    @classmethod
    def fixed(cls, voiceprints: VoiceprintSet, threshold: float,
              top_k: int = 5) -> OpenSetIdentifier:
        """One raw cutoff, no calibration."""
        return cls(voiceprints, AcceptRule(threshold=threshold, metric=voiceprints.scorer.metric),
                   top_k)

    def identify(self, evidence: Evidence) -> Identity:
        top = self.voiceprints.search(evidence.embedding, self.top_k)
        best = top[0] if top else None
        if best is None:
            return Identity(None, confidence=1.0, top=top)
        accept, confidence = self.room.rule.judge(best.score, evidence.speech_s,
                                                  len(self.voiceprints))
        speaker = best.name if accept else None
        if confidence is None:
            labels = evidence.window_labels
            confidence = (sum(1 for w in labels if w == speaker) / len(labels)
                          if labels else 1.0)
        return Identity(speaker=speaker, score=best.score, confidence=confidence, top=top)

    def learn(self, evidence: Evidence, identity: Identity) -> None:
        """A turn named surely enough is a stranger to every other voiceprint: its
        scores against them are the room's evidence of how strangers score here."""
        if (not self.room.adapts or identity.speaker is None
                or identity.confidence < CONFIDENT):
            return
        snap, scores = self.voiceprints.scores(evidence.embedding[None, :])
        own = snap.names.index(identity.speaker) if identity.speaker in snap.names else -1
        others = np.delete(scores[0], own) if own >= 0 else scores[0]
        self.room.heard(to_cosine(others, self.voiceprints.scorer.metric), evidence.speech_s)

