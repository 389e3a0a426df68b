"""Subtitles with speaker names: a transcript's words, each given the speaker of
``identify``'s segments that overlap it most in time.

A word is MARKED, not guessed (``speaker`` None, ``reason`` set), where:
- ``overlap``: more than half of it lies in overlapped speech (the result's
  ``overlaps``, or segments flagged ``overlap``); its ``voices`` list who was
  labelled there;
- ``no decision``: the segments over it that have no speaker cover it more than
  any speaker does, two speakers cover it equally, or no segment touches it.
  A word that touches no segment but lies within ``snap_s`` of segments of one
  speaker only takes that speaker: word times and segment edges are each off by
  about that much (0.25 s, the collar the scoring forgives).

Cues break where the speaker (or the mark) changes, where the input's cue
ends, at a pause, and where the text would pass ``CueLayout``'s limits (42
characters a line, 2 lines, 7 s: common subtitle practice). SRT is composed by
``srt``, and WebVTT by ``webvtt-py``, the parsers that read them back.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import srt
import webvtt
from webvtt.models import Timestamp

from vggvox.recording.segments import RecordingResult
from vggvox.recording.transcript import GIVEN, Transcript, Word

OVERLAP = "overlap"
NO_DECISION = "no decision"
SNAP_S = 0.25
MARKERS = {OVERLAP: "[overlap]", NO_DECISION: "[?]"}
"""What a cue of marked words shows in place of a name (SRT and WebVTT)."""
_CLAUSE_END = ".,;:?!"


@dataclass(frozen=True)
class SpokenWord:
    start: float
    end: float
    text: str
    speaker: str | None
    """The speaker's name or unknown label; None where the word is marked."""
    reason: str | None = None
    """None, OVERLAP or NO_DECISION."""
    voices: tuple[str, ...] = ()
    """The speakers labelled over the word, most time first (both voices in an overlap)."""
    cue: int = 0
    timing: str = GIVEN

    def as_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "word": self.text,
                "speaker": self.speaker, "reason": self.reason, "voices": list(self.voices),
                "timing": self.timing}


class _Timeline:
    """The result's segments as arrays, for the overlap of one word with all of them."""

    def __init__(self, result: RecordingResult) -> None:
        segs = result.segments
        self.starts = np.array([s.start for s in segs], dtype=np.float64)
        self.ends = np.array([s.end for s in segs], dtype=np.float64)
        self.speakers = [s.speaker for s in segs]
        spans = sorted([*result.overlaps, *((s.start, s.end) for s in segs if s.overlap)])
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.overlaps = np.array(merged, dtype=np.float64).reshape(-1, 2)

    def covered(self, a: float, b: float) -> np.ndarray:
        """Seconds of [a, b] inside each segment (a zero-length word: 1 inside, 0 outside)."""
        if b <= a:
            return ((self.starts <= a) & (a < self.ends)).astype(np.float64)
        return np.clip(np.minimum(self.ends, b) - np.maximum(self.starts, a), 0.0, None)

    def overlapped(self, a: float, b: float) -> bool:
        o = self.overlaps
        if b <= a:
            return bool(np.any((o[:, 0] <= a) & (a < o[:, 1])))
        inside = np.clip(np.minimum(o[:, 1], b) - np.maximum(o[:, 0], a), 0.0, None).sum()
        return bool(inside > (b - a) / 2)

    def near(self, a: float, b: float, snap_s: float) -> set[str | None]:
        gap = np.maximum(self.starts - b, a - self.ends)
        return {self.speakers[i] for i in np.flatnonzero(gap <= snap_s)}


def _by_speaker(t: _Timeline, covered: np.ndarray) -> dict[str | None, float]:
    time: dict[str | None, float] = {}
    for i in np.flatnonzero(covered > 0):
        time[t.speakers[i]] = time.get(t.speakers[i], 0.0) + float(covered[i])
    return time


def _decide(t: _Timeline, w: Word, snap_s: float) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(speaker, reason, voices) of one word."""
    time = _by_speaker(t, t.covered(w.start, w.end))
    named = sorted(((v, k) for k, v in time.items() if k is not None), reverse=True)
    voices = tuple(k for _, k in named)
    if t.overlapped(w.start, w.end):
        return None, OVERLAP, voices
    if not time:
        near = t.near(w.start, w.end, snap_s)
        name = near.pop() if len(near) == 1 else None  # one speaker only, and decided
        return (name, None, (name,)) if name is not None else (None, NO_DECISION, ())
    if not named or time.get(None, 0.0) > named[0][0] or (
            len(named) > 1 and named[1][0] == named[0][0]):
        return None, NO_DECISION, voices
    return named[0][1], None, voices


def assign_speakers(words: Sequence[Word], result: RecordingResult,
                    snap_s: float = SNAP_S) -> list[SpokenWord]:
    """Each word with the speaker whose segments overlap it most, or marked (module doc)."""
    timeline = _Timeline(result)
    out = []
    for w in words:
        speaker, reason, voices = _decide(timeline, w, snap_s)
        out.append(SpokenWord(w.start, w.end, w.text, speaker, reason, voices, w.cue, w.timing))
    return out


# --- cues --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CueLayout:
    max_chars: int = 42
    """Characters a line (the name prefix included)."""
    max_lines: int = 2
    max_s: float = 7.0
    min_s: float = 1.0
    """A shorter cue is held on screen this long, unless the next one starts before."""
    pause_s: float = 1.5
    """A pause between two words this long starts a new cue."""


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    speaker: str | None
    reason: str | None
    words: tuple[SpokenWord, ...]
    lines: tuple[str, ...]
    """The SRT text, wrapped: ``Name: `` first where the speaker changed, the mark
    first on marked words."""
    voice_lines: tuple[str, ...]
    """The WebVTT text, wrapped: the mark first on marked words, no name (the voice
    span carries it)."""

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def label(speaker: str | None, reason: str | None) -> str:
    """The prefix a cue shows: a mark for marked words, else the name and a colon."""
    return MARKERS[reason] if reason else f"{speaker}:"


def _wrap(prefix: str, words: Sequence[SpokenWord], layout: CueLayout) -> tuple[str, ...]:
    text = " ".join([prefix] * bool(prefix) + [w.text for w in words])
    return tuple(textwrap.wrap(text, layout.max_chars, break_long_words=False,
                               break_on_hyphens=False))


def _same_run(a: SpokenWord, b: SpokenWord, layout: CueLayout) -> bool:
    """One speaker (or mark), one input cue, no pause: only the layout may cut here."""
    return (a.speaker, a.reason, a.cue) == (b.speaker, b.reason, b.cue) \
        and b.start - a.end < layout.pause_s


def _fits(cue: Sequence[SpokenWord], prefix: str, layout: CueLayout) -> bool:
    return (cue[-1].end - cue[0].start <= layout.max_s
            and len(_wrap(prefix, cue, layout)) <= layout.max_lines)


def _carry(cue: list[SpokenWord], w: SpokenWord, layout: CueLayout) -> list[SpokenWord]:
    """The words after the cue's last clause end, taken off it to open the next cue with
    ``w``: a cue cut by the layout ends at punctuation where its second half has some."""
    ends = [i for i in range(len(cue) // 2, len(cue)) if cue[i].text[-1] in _CLAUSE_END]
    if not ends or not _fits([*cue[ends[-1] + 1:], w], "", layout):  # (none after the last)
        return []
    carried = cue[ends[-1] + 1:]
    del cue[ends[-1] + 1:]
    return carried


def make_cues(words: Sequence[SpokenWord], layout: CueLayout | None = None) -> list[Cue]:
    """Subtitle cues from the words in order: one speaker (or one mark) a cue."""
    layout = layout or CueLayout()
    groups: list[tuple[list[SpokenWord], str]] = []
    previous: str | None = None
    for w in words:
        if groups and _same_run(groups[-1][0][-1], w, layout):
            cue, prefix = groups[-1]
            if _fits([*cue, w], prefix, layout):
                cue.append(w)
            else:
                groups.append(([*_carry(cue, w, layout), w], MARKERS.get(w.reason or "", "")))
            continue
        shown = w.reason is not None or w.speaker != previous
        groups.append(([w], label(w.speaker, w.reason) if shown else ""))
        previous = w.speaker
    cues = [Cue(g[0].start, max(x.end for x in g), g[0].speaker, g[0].reason, tuple(g),
                _wrap(prefix, g, layout), _wrap(MARKERS.get(g[0].reason or "", ""), g, layout))
            for g, prefix in groups]
    return _held(cues, layout.min_s)


def _held(cues: list[Cue], min_s: float) -> list[Cue]:
    """Short cues held ``min_s`` on screen, never into the next; never zero length."""
    out = []
    for i, c in enumerate(cues):
        limit = cues[i + 1].start if i + 1 < len(cues) else c.start + min_s
        end = max(c.end, min(c.start + min_s, limit))
        out.append(replace(c, end=end if end - c.start >= 0.001 else c.start + 0.001))
    return out


# --- files -------------------------------------------------------------------------------


def format_srt(cues: Sequence[Cue]) -> str:
    """SRT text of the cues, composed by ``srt``."""
    return str(srt.compose([
        srt.Subtitle(i + 1, timedelta(seconds=round(c.start, 3)),
                     timedelta(seconds=round(c.end, 3)), "\n".join(c.lines))
        for i, c in enumerate(cues)]))


def format_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text of the cues: a ``<v Name>`` voice span on each named cue; ``&``,
    ``<`` and ``>`` written as character references, as WebVTT cue text requires."""
    captions = []
    for c in cues:
        lines = [html.escape(x, quote=False) for x in c.voice_lines]
        if c.reason is None and c.speaker:
            lines[0] = f"<v {html.escape(c.speaker, quote=False)}>{lines[0]}"
        captions.append(webvtt.Caption(str(Timestamp.from_seconds(c.start)),
                                       str(Timestamp.from_seconds(c.end)), lines))
    return str(webvtt.WebVTT(captions=captions).content)


def words_json(words: Sequence[SpokenWord], result: RecordingResult,
               transcript: Transcript | None = None) -> dict[str, Any]:
    """The speaker of every word, with what was marked and what the reading made up."""
    counts = {"words": len(words), "named": sum(w.speaker is not None for w in words),
              OVERLAP: sum(w.reason == OVERLAP for w in words),
              NO_DECISION: sum(w.reason == NO_DECISION for w in words)}
    return {"recording": result.path,
            "transcript": transcript.path if transcript else None,
            "format": transcript.format if transcript else None,
            "notes": list(transcript.notes) if transcript else [],
            "counts": counts, "words": [w.as_dict() for w in words]}


def write_subtitles(result: RecordingResult, transcript: Transcript, *,
                    srt_path: str | Path | None = None, vtt_path: str | Path | None = None,
                    json_path: str | Path | None = None, layout: CueLayout | None = None,
                    snap_s: float = SNAP_S) -> list[SpokenWord]:
    """Assign the transcript's words to the result's speakers and write the files asked for."""
    words = assign_speakers(transcript.words, result, snap_s)
    cues = make_cues(words, layout)
    for path, text in ((srt_path, format_srt(cues) if srt_path else ""),
                       (vtt_path, format_vtt(cues) if vtt_path else ""),
                       (json_path, json.dumps(words_json(words, result, transcript), indent=2)
                        + "\n" if json_path else "")):
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
    return words
