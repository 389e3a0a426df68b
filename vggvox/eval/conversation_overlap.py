"""Overlapped speech in the synthetic conversations: two people talking at once.

People overlap in meetings in two ways, and the builder places both:

- **at turn starts**: the next speaker starts before the previous one has
  finished, who trails off under them (``TURN_LEAD_S``);
- **back-channels**: a short interjection of someone else inside a turn
  (``BACKCHANNEL_S``), cut from one of that speaker's utterances.

The share of speech time with two voices follows ``overlap_fraction`` by a
running count: an overlap is placed only while the conversation so far is
below its share, so the measured share ends within about one overlap of it.
Never three voices at once: two overlaps are ``SEPARATION_S`` apart at least.

Levels: the overlapping voice (the one that trails off at a turn start, the
back-channel) is mixed ``overlap_gain_db`` relative to the voice that holds the
floor, drawn from -6..0 dB by default. Two talkers at similar distances from
one table microphone differ by a few dB, and the one who yields or
back-channels is the quieter one more often than not; much further below, an
overlapping voice becomes background that annotators of real meetings often
leave unmarked, and above 0 dB it would be the one holding the floor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.eval.conversation_plan import MaterialPool
from vggvox.eval.speech import Clip
from vggvox.recording.rttm import Segment

if TYPE_CHECKING:
    from vggvox.eval.conversations import ConversationSpec

TURN_LEAD_S = (0.5, 2.5)
"""How long the next speaker talks over the end of the previous turn."""
LEAD_CHANCE = 0.85
"""Speaker changes that overlap while the share is behind (the others keep their gap)."""
BACKCHANNEL_S = (0.5, 1.5)
MARGIN_S = 0.5
"""A back-channel lies this far inside a stretch of the host's speech."""
SEPARATION_S = 0.3
RAMP_S = 0.05
"""The trailing voice is turned down over this long, not with a step."""
FADE_S = 0.01
"""Fades at the cut ends of a back-channel, so that the cuts do not click."""
SEARCH = 4
"""Utterances tried for a back-channel long enough before giving up on one."""


@dataclass(frozen=True)
class OverlapEvent:
    """Two voices from ``start`` to ``end``: ``speaker`` holds the floor, ``other``
    overlaps at ``gain_db`` relative to it."""

    kind: str
    """``turn-start`` (other is the previous speaker, trailing off) or ``back-channel``."""
    start: float
    end: float
    speaker: str
    other: str
    gain_db: float
    path: Path | None = None
    """A back-channel's source utterance."""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "start": self.start, "end": self.end,
                             "speaker": self.speaker, "other": self.other,
                             "gain_db": self.gain_db}
        if self.path is not None:
            d["path"] = str(self.path)
        return d


def overlap_seconds(segments: Iterable[Segment]) -> tuple[float, float]:
    """(seconds where two or more speakers speak, seconds where anyone speaks)."""
    edges = sorted(e for s in segments if s.end > s.start
                   for e in ((s.start, 1), (s.end, -1)))
    overlap = speech = 0.0
    active = 0
    last = 0.0
    for t, step in edges:
        if active >= 1:
            speech += t - last
        if active >= 2:
            overlap += t - last
        active += step
        last = t
    return overlap, speech


def _seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE, 3)


class OverlapMixer:
    """Places the overlaps of one conversation as its turns are laid out.

    The caller lays the turns out as without overlap, and asks ``lead`` at each
    speaker change (how far the new turn starts early) and calls ``placed``
    after each utterance of a turn (which may add a back-channel inside it).
    """

    def __init__(self, spec: ConversationSpec, pool: MaterialPool, speakers: Sequence[str],
                 rng: np.random.Generator) -> None:
        self._spec = spec
        self._pool = pool
        self._speakers = list(speakers)
        self._rng = rng
        self._busy_until = 0  # end (in samples) of the latest overlap
        self._last: tuple[int, Clip, str] | None = None  # the latest utterance's piece
        self.events: list[OverlapEvent] = []

    def _behind(self, segments: Iterable[Segment], coming_s: float = 0.0) -> float:
        """Seconds of overlap missing to reach the share, counting ``coming_s`` of speech
        about to be laid out."""
        overlap, speech = overlap_seconds(segments)
        return self._spec.overlap_fraction * (speech + coming_s) - overlap

    def _gain_db(self) -> float:
        return round(float(self._rng.uniform(*self._spec.overlap_gain_db)), 2)

    def lead(self, pieces: list[tuple[int, np.ndarray]], segments: Sequence[Segment],
             clip: Clip, speaker: str) -> int:
        """Samples by which ``speaker``'s turn (``clip``) starts before the previous
        utterance ends (0: a gap instead); its overlapped tail is turned down."""
        if self._last is None or self._rng.random() >= LEAD_CHANCE:
            return 0
        if self._behind(segments, clip.seconds) <= 0:
            return 0
        index, prev, prev_speaker = self._last
        start, audio = pieces[index]
        end = start + audio.size
        last_span = prev.spans[-1][1] - prev.spans[-1][0]
        first_span = clip.spans[0][1] - clip.spans[0][0]
        room = min(0.8 * last_span, 0.8 * first_span, end - self._busy_until
                   - SEPARATION_S * SAMPLE_RATE) / SAMPLE_RATE
        if room < TURN_LEAD_S[0]:
            return 0
        early = round(float(self._rng.uniform(TURN_LEAD_S[0], min(TURN_LEAD_S[1], room)))
                      * SAMPLE_RATE)
        gain = self._gain_db()
        tail = audio.copy()  # the pool's cached clip stays as it is
        at = tail.size - early
        ramp = min(round(RAMP_S * SAMPLE_RATE), early)
        level = np.full(early, 10 ** (gain / 20), dtype=np.float32)
        level[:ramp] = np.linspace(1.0, level[0], ramp, dtype=np.float32)
        tail[at:] *= level
        pieces[index] = (start, tail)
        self._busy_until = end
        self.events.append(OverlapEvent("turn-start", _seconds(end - early), _seconds(end),
                                        speaker, prev_speaker, gain))
        return early

    def placed(self, pieces: list[tuple[int, np.ndarray]], segments: list[Segment],
               clip: Clip, speaker: str, used: set[Path]) -> None:
        """An utterance of ``speaker`` was laid out as the last of ``pieces``: add a
        back-channel of someone else inside it while the share is behind."""
        index = len(pieces) - 1
        self._last = (index, clip, speaker)
        if self._behind(segments) < BACKCHANNEL_S[0]:
            return
        host = pieces[index][0]
        n = round(float(self._rng.uniform(*BACKCHANNEL_S)) * SAMPLE_RATE)
        margin = round(MARGIN_S * SAMPLE_RATE)
        first = self._busy_until + round(SEPARATION_S * SAMPLE_RATE)
        windows = [(max(host + a + margin, first), host + b - margin - n) for a, b in clip.spans]
        windows = [(lo, hi) for lo, hi in windows if hi >= lo]
        others = [s for s in self._speakers if s != speaker]
        if not windows or not others:
            return
        other = others[int(self._rng.integers(len(others)))]
        cut = self._cut(other, n, used)
        if cut is None:
            return
        audio, path = cut
        lo, hi = windows[int(self._rng.integers(len(windows)))]
        at = int(self._rng.integers(lo, hi + 1))
        gain = self._gain_db()
        pieces.append((at, audio * np.float32(10 ** (gain / 20))))
        segments.append(Segment(_seconds(at), _seconds(at + n), other))
        self._busy_until = at + n
        self.events.append(OverlapEvent("back-channel", _seconds(at), _seconds(at + n),
                                        speaker, other, gain, path))

    def _cut(self, speaker: str, n: int, used: set[Path]) -> tuple[np.ndarray, Path] | None:
        """``n`` samples from inside one stretch of speech of one of ``speaker``'s
        utterances, preferring those the conversation has not used, faded at the cuts."""
        utts = self._pool.by_speaker[speaker]
        order = [utts[j] for j in self._rng.permutation(len(utts))]
        order.sort(key=lambda u: u.path in used)  # stable: unused first, drawn order kept
        for utt in order[:SEARCH]:
            clip = self._pool.clip(utt)
            spans = [] if clip is None else [(a, b) for a, b in clip.spans if b - a >= n]
            if clip is None or not spans:
                continue
            a, b = spans[int(self._rng.integers(len(spans)))]
            at = int(self._rng.integers(a, b - n + 1))
            piece = clip.audio[at:at + n].copy()
            fade = min(round(FADE_S * SAMPLE_RATE), n // 2)
            ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
            piece[:fade] *= ramp
            piece[n - fade:] *= ramp[::-1]
            return piece, utt.path
        return None
