"""What ``identify`` says about a recording: labelled speaker segments.

A segment is one speaker's stretch of speech: an enrolled speaker's name, or
an unknown voice's label (``unknown-1`` ...), stable over the recording. Two
segments overlap in time where two voices were labelled in overlapped speech.
A segment whose evidence is too weak to decide has no speaker (``None``): it
says so rather than guess, and outputs that need a name (RTTM) leave it out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

UNKNOWN_PREFIX = "unknown-"


@dataclass(frozen=True)
class SpeakerSegment:
    start: float
    end: float
    speaker: str | None
    """An enrolled speaker's name, an unknown voice's label, or None: no decision."""
    enrolled: bool
    """The label is an enrolled speaker's name (not an unknown voice, not None)."""
    score: float
    """The best raw score against the enrolled speakers (for an unknown voice, the
    best one, which stayed below the cutoff); nan with nobody enrolled."""
    confidence: float | None
    """Calibrated probability that the label is right; None where the model has
    no calibration or there is no decision."""
    overlap: bool = False
    """Inside detected overlapped speech (another voice speaks at the same time)."""

    @property
    def duration(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end"):
            d[k] = round(d[k], 3)
        d["score"] = None if d["score"] != d["score"] else round(d["score"], 4)
        if d["confidence"] is not None:
            d["confidence"] = round(d["confidence"], 4)
        return d


@dataclass(frozen=True)
class SpeakerTotal:
    speaker: str
    enrolled: bool
    talk_s: float
    turns: int
    """Segments labelled with this speaker (consecutive ones of one speaker count once)."""


@dataclass(frozen=True)
class Suggestion:
    """An unknown voice that scores close to an enrolled speaker: shown, never applied."""

    label: str
    name: str
    score: float


@dataclass(frozen=True)
class RecordingResult:
    path: str
    file_id: str
    """The RTTM file id: the file's name without its suffix, spaces replaced."""
    duration_s: float
    segments: tuple[SpeakerSegment, ...]
    """Sorted by start; may overlap in time (two voices labelled at once)."""
    overlaps: tuple[tuple[float, float], ...] = ()
    """Detected overlapped speech, (start, end) in seconds, sorted."""
    suggestions: tuple[Suggestion, ...] = ()
    compute_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    """Figures of the run (clusters before and after re-clustering, ...)."""

    def totals(self) -> list[SpeakerTotal]:
        return speaker_totals(self.segments)


def speaker_totals(segments: Iterable[SpeakerSegment]) -> list[SpeakerTotal]:
    """Talk time and turns per speaker, most talk first (no-decision segments left out)."""
    talk: dict[str, float] = {}
    turns: dict[str, int] = {}
    enrolled: dict[str, bool] = {}
    previous: str | None = None
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        if s.speaker is None:
            continue
        talk[s.speaker] = talk.get(s.speaker, 0.0) + s.duration
        enrolled[s.speaker] = s.enrolled
        if s.speaker != previous:
            turns[s.speaker] = turns.get(s.speaker, 0) + 1
        previous = s.speaker
    return sorted((SpeakerTotal(k, enrolled[k], round(v, 3), turns[k]) for k, v in talk.items()),
                  key=lambda t: (-t.talk_s, t.speaker))
