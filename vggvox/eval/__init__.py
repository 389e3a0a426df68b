"""Evaluation of speaker turns in conversations.

Synthetic conversations with RTTM truth (conversations), the RTTM format
(rttm), and scoring a live system's turns and decisions against the truth
(timeline), with a picture of both timelines (plot).
"""

from __future__ import annotations

from vggvox.eval.conversations import (
    Conversation,
    ConversationSpec,
    Placed,
    build_conversations,
    gap_shares,
)
from vggvox.eval.plot import plot_timelines
from vggvox.eval.rttm import Segment, read_rttm, write_rttm
from vggvox.eval.timeline import (
    ConversationScore,
    Decision,
    Labelled,
    TrueTurn,
    combine,
    score_conversation,
    true_turns,
)

__all__ = [
    "Conversation",
    "ConversationScore",
    "ConversationSpec",
    "Decision",
    "Labelled",
    "Placed",
    "Segment",
    "TrueTurn",
    "build_conversations",
    "combine",
    "gap_shares",
    "plot_timelines",
    "read_rttm",
    "score_conversation",
    "true_turns",
    "write_rttm",
]
