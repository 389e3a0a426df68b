"""Voices remembered across recordings (``identify --remember``), measured.

A built conversation is cut into a few recordings at pauses between its truth
segments, so that its strangers are heard in several of them, each time in
other utterances. After identifying them in order with ``--remember``, a
stranger's voice is remembered when their true turns (``timeline.true_turns``)
carry one unknown label: per stranger, the share of their turns whose majority
label is their most frequent one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from vggvox.eval.conversations import Conversation
from vggvox.eval.timeline import true_turns
from vggvox.recording.rttm import Segment
from vggvox.recording.segments import SpeakerSegment


@dataclass(frozen=True)
class Part:
    wav: Path
    truth: tuple[Segment, ...]
    """Its truth, in seconds from its own start."""


def split_conversation(conv: Conversation, out: Path, n: int = 3) -> list[Part]:
    """``conv`` cut into ``n`` recordings of about equal length, at pauses between truth
    segments (no one is cut mid-segment), written to ``out``/part1.wav, ..."""
    audio, rate = sf.read(str(conv.wav), dtype="int16")
    segs = list(conv.segments)
    pauses = [(a.end + b.start) / 2 for a, b in itertools.pairwise(segs) if b.start > a.end]
    if len(pauses) < n - 1:
        raise ValueError(f"{conv.wav}: {len(pauses)} pauses, too few to cut in {n}")
    cuts = [0.0, *sorted({min(pauses, key=lambda p: abs(p - k * conv.duration_s / n))
                          for k in range(1, n)}), conv.duration_s]
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        path = out / f"{conv.wav.stem}-part{k + 1}.wav"
        sf.write(str(path), audio[int(a * rate):int(b * rate)], rate)
        parts.append(Part(path, tuple(Segment(round(s.start - a, 9), round(s.end - a, 9),
                                              s.speaker) for s in segs if a <= s.start < b)))
    return parts


@dataclass(frozen=True)
class Remembered:
    speaker: str
    label: str | None
    """Their most frequent label over their turns (None: mostly no decision)."""
    turns: int
    same: int
    """Turns whose majority label is ``label``."""
    recordings: int
    """Recordings they were heard in."""

    @property
    def share(self) -> float:
        return self.same / self.turns if self.turns else 0.0


def consistency(parts: Sequence[Part], outputs: Sequence[Iterable[SpeakerSegment]],
                enrolled: Iterable[str]) -> list[Remembered]:
    """For each stranger (truth speaker not in ``enrolled``), how consistently one label
    named their turns across the recordings (``outputs``, one per part, in order)."""
    names = frozenset(enrolled)
    got: dict[str, list[str | None]] = {}
    heard: dict[str, set[int]] = {}
    for k, (part, segs) in enumerate(zip(parts, outputs, strict=True)):
        segs = list(segs)
        # Each speaker's own turns: with the enrolled alone named, two strangers in a row
        # would be one "unknown" turn.
        everyone = frozenset(s.speaker for s in part.truth)
        for turn in true_turns(part.truth, everyone):
            if turn.label in names:
                continue
            cover: dict[str | None, float] = {}
            for s in segs:
                cover[s.speaker] = cover.get(s.speaker, 0.0) + max(
                    0.0, min(s.end, turn.end) - max(s.start, turn.start))
            who = turn.label
            got.setdefault(who, []).append(max(cover, key=lambda k: cover[k]) if cover else None)
            heard.setdefault(who, set()).add(k)
    out = []
    for who, labels in sorted(got.items()):
        top, same = Counter(labels).most_common(1)[0]
        out.append(Remembered(who, top, len(labels), same, len(heard[who])))
    return out
