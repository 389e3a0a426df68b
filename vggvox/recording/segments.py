"""What ``identify`` says about a recording: labelled speaker segments.

A segment is one speaker's stretch of speech: an enrolled speaker's name, or
an unknown voice's label (``unknown-1`` ...), stable over the recording. Two
segments overlap in time where two voices were labelled in overlapped speech.
A segment whose evidence is too weak to decide has no speaker (``None``): it
says so rather than guess, and outputs that need a name (RTTM) leave it out.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

UNKNOWN_PREFIX = "unknown-"


def file_id_of(path: str | Path) -> str:
    """A recording's RTTM file id: its file name without the suffix, spaces replaced
    (RTTM fields are separated by spaces)."""
    name = Path(path).stem if str(path) else ""
    return "".join("_" if c.isspace() else c for c in name) or "recording"


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
    candidate: str | None = None
    """With no decision: the label the weak evidence leaned to (not asserted)."""

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
class UnknownVoice:
    """The evidence behind one unknown label of a recording: what ``--remember`` keeps."""

    label: str
    total: np.ndarray
    """Sum of its turns' window embeddings (each unit length)."""
    windows: int
    speech_s: float
    start: float
    end: float
    """Its first and last second of speech in the recording."""


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
    unknown_voices: tuple[UnknownVoice, ...] = ()

    def totals(self) -> list[SpeakerTotal]:
        return speaker_totals(self.segments)

    def relabelled(self, labels: dict[str, str]) -> RecordingResult:
        """The same answer with unknown labels renamed (e.g. to remembered voices')."""
        def new(label: str | None) -> str | None:
            return labels.get(label, label) if label is not None else None

        return replace(
            self,
            segments=tuple(replace(s, speaker=new(s.speaker)) for s in self.segments),
            suggestions=tuple(replace(s, label=labels.get(s.label, s.label))
                              for s in self.suggestions),
            unknown_voices=tuple(replace(v, label=labels.get(v.label, v.label))
                                 for v in self.unknown_voices))


def speaker_totals(segments: Iterable[SpeakerSegment]) -> list[SpeakerTotal]:
    """Talk time and turns per speaker, most talk first (no-decision segments left out).

    Talk time counts overlapped speech for each voice in it, so the speakers' shares
    of a recording can add up to more than all of it. A turn is a run of a speaker's
    segments that no other speaker's run starts within: the pieces a segment is cut
    into at the edges of an overlap stay one turn.
    """
    talk: dict[str, float] = {}
    enrolled: dict[str, bool] = {}
    runs: list[tuple[float, float, str]] = []
    last: dict[str, int] = {}
    """Each speaker's latest run (index into runs)."""
    for s in sorted(segments, key=lambda s: (s.start, s.end)):
        if s.speaker is None:
            continue
        talk[s.speaker] = talk.get(s.speaker, 0.0) + s.duration
        enrolled[s.speaker] = s.enrolled
        k = last.get(s.speaker)
        if k is not None and s.start <= runs[k][1] + 1e-6:
            runs[k] = (runs[k][0], max(runs[k][1], s.end), s.speaker)
        else:
            last[s.speaker] = len(runs)
            runs.append((s.start, s.end, s.speaker))
    turns: dict[str, int] = {}
    previous: str | None = None
    for _, _, who in sorted(runs):
        if who != previous:
            turns[who] = turns.get(who, 0) + 1
        previous = who
    return sorted((SpeakerTotal(k, enrolled[k], round(v, 3), turns[k]) for k, v in talk.items()),
                  key=lambda t: (-t.talk_s, t.speaker))


REACH_S = 1.0
"""How far from a stretch of overlapped speech another speaker's segment may end or
begin to be taken as the second voice in it."""


def mark_overlaps(segments: Iterable[SpeakerSegment], overlaps: Iterable[tuple[float, float]],
                  reach_s: float = REACH_S) -> list[SpeakerSegment]:
    """Segments cut at the edges of overlapped speech, the parts inside flagged, and
    both voices labelled over the whole of each stretch where the evidence names two.

    The two voices of a stretch are the two speakers labelled most in it; where
    only one is, the second is the other speaker whose segment ends or begins
    nearest to it, within ``reach_s``: in conversation, overlap is mostly where
    one speaker starts before the other has finished. With no such neighbour,
    the stretch keeps one label, flagged: the evidence names one voice only.
    """
    regions = sorted(overlaps)
    original = sorted(segments, key=lambda s: (s.start, s.end))
    out = [piece for s in original for piece in _cut(s, regions)]
    for a, b in regions:
        cover: dict[str, float] = {}
        for p in out:
            if p.overlap and p.speaker is not None and p.start < b and p.end > a:
                cover[p.speaker] = cover.get(p.speaker, 0.0) + min(p.end, b) - max(p.start, a)
        voices = sorted(cover, key=lambda k: -cover[k])[:2]
        if len(voices) == 1:
            near = sorted((max(0.0, a - s.end, s.start - b), s.start, s.speaker)
                          for s in original if s.speaker is not None and s.speaker != voices[0])
            voices += [who for gap, _, who in near[:1] if gap <= reach_s]
        if len(voices) == 2:
            for who in voices:
                out += _fill(who, a, b, out, original)
    return sorted(out, key=lambda s: (s.start, s.end, s.speaker or ""))


def _fill(who: str, a: float, b: float, have: list[SpeakerSegment],
          original: list[SpeakerSegment]) -> list[SpeakerSegment]:
    """Segments of ``who`` over the parts of [a, b) it does not cover yet, with the
    score and confidence of its segment nearest to them."""
    mine = sorted((p.start, p.end) for p in have if p.speaker == who and p.start < b
                  and p.end > a)
    gaps, at = [], a
    for s, e in mine:
        if s > at:
            gaps.append((at, s))
        at = max(at, e)
    if at < b:
        gaps.append((at, b))
    model = min((s for s in original if s.speaker == who),
                key=lambda s: max(0.0, a - s.end, s.start - b))
    return [replace(model, start=s, end=e, overlap=True) for s, e in gaps]


def _cut(s: SpeakerSegment, regions: list[tuple[float, float]]) -> list[SpeakerSegment]:
    points = sorted({s.start, s.end, *(t for a, b in regions for t in (a, b)
                                       if s.start < t < s.end)})
    pieces = []
    for a, b in itertools.pairwise(points):
        inside = any(ra < b and rb > a for ra, rb in regions)
        pieces.append(replace(s, start=a, end=b, overlap=inside))
    return pieces
