"""Evaluation: what only the offline modes, the calibration fit and the benches use.

Verification and identification figures (``metrics``: EER, minDCF, DET), the
utterance and trial lists they read (``lists``), the embedding cache (``cache``),
the open-set rule's evaluation (``openset``), fitting a calibration
(``calibration_fit``, ``fitcheck``), one engine for the offline runs (``engine``),
and speaker turns in conversations: synthetic conversations with RTTM truth
(``conversations``), the RTTM format (``rttm``), scoring a live system's turns
and decisions against the truth (``timeline``), with a picture of both timelines
(``plot``). Neither the daemon nor the rest of the library imports this package
(setup.cfg's contracts).

The names below are imported on first use, so that ``import vggvox.eval.lists``
does not load the conversations (and numpy) first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Conversation": "vggvox.eval.conversations",
    "ConversationSpec": "vggvox.eval.conversations",
    "Placed": "vggvox.eval.conversations",
    "build_conversations": "vggvox.eval.conversations",
    "gap_shares": "vggvox.eval.conversations",
    "plot_timelines": "vggvox.eval.plot",
    "Segment": "vggvox.recording.rttm",
    "read_rttm": "vggvox.recording.rttm",
    "write_rttm": "vggvox.recording.rttm",
    "ConversationScore": "vggvox.eval.timeline",
    "Decision": "vggvox.eval.timeline",
    "Labelled": "vggvox.eval.timeline",
    "TrueTurn": "vggvox.eval.timeline",
    "combine": "vggvox.eval.timeline",
    "score_conversation": "vggvox.eval.timeline",
    "true_turns": "vggvox.eval.timeline",
}

__all__ = [
    "Conversation", "ConversationScore", "ConversationSpec", "Decision", "Labelled", "Placed",
    "Segment", "TrueTurn", "build_conversations", "combine", "gap_shares", "plot_timelines",
    "read_rttm", "score_conversation", "true_turns", "write_rttm",
]

if TYPE_CHECKING:
    from vggvox.eval.conversations import (
        Conversation,
        ConversationSpec,
        Placed,
        build_conversations,
        gap_shares,
    )
    from vggvox.eval.plot import plot_timelines
    from vggvox.eval.timeline import (
        ConversationScore,
        Decision,
        Labelled,
        TrueTurn,
        combine,
        score_conversation,
        true_turns,
    )
    from vggvox.recording.rttm import Segment, read_rttm, write_rttm


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vggvox.eval' has no attribute {name!r}")
