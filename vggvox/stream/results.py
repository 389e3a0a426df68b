"""What a recognizer returns, in stream order. Times are sample indices on the
stream's own clock (samples since it started); ``t_start``/``t_end`` give seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from vggvox.audio import SAMPLE_RATE
from vggvox.scoring import Match


@dataclass(frozen=True)
class Span:
    start: int
    end: int

    @property
    def t_start(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def t_end(self) -> float:
        return self.end / SAMPLE_RATE


@dataclass(frozen=True)
class SpeechStarted(Span):
    """A speech segment opened at ``start`` (``end`` == ``start``)."""


@dataclass(frozen=True)
class SpeechEnded(Span):
    """The speech segment [start, end) closed."""


@dataclass(frozen=True)
class WindowScore(Span):
    """One window scored alone: the raw per-window decision."""

    speaker: str | None
    score: float
    top: list[Match]


@dataclass(frozen=True)
class TurnUpdate(Span):
    """The current answer for turn ``turn`` over [start, end).

    Published when the turn opens, whenever its label changes, at most once a
    hop while it is open, and once more with ``final`` when it closes: the
    last update of a turn is its answer.
    """

    turn: int
    speaker: str | None
    unknown: str | None
    score: float
    confidence: float
    top: list[Match]
    final: bool
    windows: int
    """Windows of evidence behind the label."""


Result = SpeechStarted | WindowScore | TurnUpdate | SpeechEnded
