"""Synthetic conversations with RTTM truth, built from any ``path speaker`` list.

Real recordings with a reliable speaker timeline are rare; concatenated read
speech with drawn gaps is a truth we control. The live pipeline's hard case is
the gap shorter than the VAD hangover (300 ms), where its windows run across
a speaker change, so most gaps are drawn below it (``short_gap_s``) and a few
above (``long_gap_s``). Turns hold 1-3 utterances of one speaker; consecutive
turns always change speaker; a share of turns goes to strangers, speakers who
are not enrolled in that conversation.

Speakers are chosen per conversation, best first: enough material for their
share of the time, then not used in an earlier conversation of the build, then
from a source (the list path's grandparent folder) not yet in the conversation.
Strangers prefer speakers enrolled in no conversation of the build. One seeded
generator drives every draw, so a rerun writes identical files.

With ``overlap_fraction`` > 0, a share of the speech time has two voices
(vggvox.eval.conversation_overlap: turns that start before the previous one
ends, back-channels inside turns); the truth then has overlapping segments.
With 0, nothing of that runs: the files are those of a build without it.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.errors import VggvoxError
from vggvox.eval.conversation_overlap import OverlapEvent, OverlapMixer, overlap_seconds
from vggvox.eval.conversation_plan import MaterialPool, choose_speakers, plan_turns
from vggvox.eval.lists import Utterance
from vggvox.recording.rttm import Segment, write_rttm

log = logging.getLogger(__name__)

LEAD_S = 0.5  # silence before the first word: a live VAD needs a moment of onset
TAIL_S = 0.5  # and after the last, longer than the hangover, to close the last segment
# Past this, back-channels inside turns would have to carry most of the overlap.
MAX_OVERLAP = 0.4


@dataclass(frozen=True)
class ConversationSpec:
    n_conversations: int = 3
    duration_s: float = 150.0
    n_enrolled: int = 4
    n_strangers: int = 2
    seed: int = 0
    short_gap_s: tuple[float, float] = (0.0, 0.25)
    long_gap_s: tuple[float, float] = (0.5, 1.5)
    long_gap_fraction: float = 0.2
    utterances_per_turn: tuple[int, int] = (1, 3)
    # A turn takes fewer utterances rather than pass this (read utterances run to 35 s).
    max_turn_s: float = 20.0
    stranger_fraction: float = 0.2
    # Sources differ by 35 dB; one microphone would not. None keeps the levels.
    level_dbfs: float | None = -26.0
    # Share of the speech time with two voices (vggvox.eval.conversation_overlap), and the
    # overlapping voice's level relative to the one holding the floor (why -6..0: there).
    overlap_fraction: float = 0.0
    overlap_gain_db: tuple[float, float] = (-6.0, 0.0)

    def as_dict(self) -> dict[str, Any]:
        """The spec as conversations.json records it; without the overlap fields when
        there is no overlap, so that such a build writes the files it wrote before them."""
        d = asdict(self)
        if not self.overlap_fraction:
            del d["overlap_fraction"], d["overlap_gain_db"]
        return d

    def check(self) -> None:
        problems = []
        if self.n_conversations < 1 or self.duration_s <= 0:
            problems.append("n_conversations must be >= 1 and duration_s > 0")
        if self.n_enrolled < 1 or self.n_strangers < 0:
            problems.append("n_enrolled must be >= 1 and n_strangers >= 0")
        if self.n_enrolled + self.n_strangers < 2:
            problems.append("turns must change speaker: at least 2 speakers are needed")
        for name in ("short_gap_s", "long_gap_s", "utterances_per_turn"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                problems.append(f"{name} must be a range 0 <= low <= high")
        if self.utterances_per_turn[0] < 1 or self.max_turn_s <= 0:
            problems.append("utterances_per_turn must start at 1 or more, max_turn_s be > 0")
        for name in ("long_gap_fraction", "stranger_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be within [0, 1]")
        if not 0 <= self.overlap_fraction <= MAX_OVERLAP:
            problems.append(f"overlap_fraction must be within [0, {MAX_OVERLAP}]")
        if not self.overlap_gain_db[0] <= self.overlap_gain_db[1]:
            problems.append("overlap_gain_db must be a range low <= high")
        if problems:
            raise VggvoxError("bad conversation spec: " + "; ".join(problems))


@dataclass(frozen=True)
class Placed:
    """One trimmed utterance as placed in a conversation (seconds), in turn ``turn``."""

    path: Path
    speaker: str
    start: float
    end: float
    turn: int


@dataclass(frozen=True)
class Conversation:
    index: int
    wav: Path
    rttm: Path
    enroll_list: Path
    enrolled: tuple[str, ...]
    strangers: tuple[str, ...]
    duration_s: float
    segments: tuple[Segment, ...]
    placed: tuple[Placed, ...]
    overlaps: tuple[OverlapEvent, ...] = ()
    overlap_share: float | None = None
    """Measured share of the speech time with two voices; None: built without overlap."""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "wav": self.wav.name,
            "rttm": self.rttm.name,
            "enroll_list": self.enroll_list.name,
            "enrolled": list(self.enrolled),
            "strangers": list(self.strangers),
            "duration_s": self.duration_s,
            "n_segments": len(self.segments),
            "utterances": [
                {"path": str(p.path), "speaker": p.speaker, "start": p.start, "end": p.end,
                 "turn": p.turn}
                for p in self.placed
            ],
        }
        if self.overlap_share is not None:
            overlap_s, speech_s = overlap_seconds(self.segments)
            d |= {"overlap_share": self.overlap_share, "overlap_s": round(overlap_s, 3),
                  "speech_s": round(speech_s, 3),
                  "overlaps": [e.as_dict() for e in self.overlaps]}
        return d


class _Gaps:
    """Gap draws whose long share stays within one gap of ``long_gap_fraction``,
    counted apart at speaker changes (where the hangover matters) and within turns."""

    def __init__(self, spec: ConversationSpec, rng: np.random.Generator) -> None:
        self._spec = spec
        self._rng = rng
        self._count: Counter[tuple[bool, bool]] = Counter()

    def draw(self, change: bool) -> float:
        spec, n = self._spec, self._count
        share = spec.long_gap_fraction * (n[change, True] + n[change, False] + 1) - n[change, True]
        long = bool(self._rng.random() < share)
        n[change, long] += 1
        lo, hi = spec.long_gap_s if long else spec.short_gap_s
        return float(self._rng.uniform(lo, hi))


def _render(
    index: int,
    enrolled: list[str],
    strangers: list[str],
    pool: MaterialPool,
    spec: ConversationSpec,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[Segment], list[Placed], OverlapMixer | None]:
    """Draw the turns of one conversation and lay their audio out on one track."""
    pieces: list[tuple[int, np.ndarray]] = []
    segments: list[Segment] = []
    placed: list[Placed] = []
    pos = round(LEAD_S * SAMPLE_RATE)
    gaps = _Gaps(spec, rng)
    # None without overlap: no draw of it then, so the files are those of a build before it.
    mixer = OverlapMixer(spec, pool, enrolled + strangers, rng) if spec.overlap_fraction else None
    turns = plan_turns(enrolled, strangers, pool, spec, rng, lambda: pos / SAMPLE_RATE + TAIL_S)
    for turn, (speaker, utts) in enumerate(turns):
        for utt in utts:
            clip = pool.clip(utt)
            assert clip is not None  # plan_turns yields only utterances with speech
            if placed:
                change = placed[-1].speaker != speaker
                early = mixer.lead(pieces, segments, clip, speaker) if mixer and change else 0
                pos = pos - early if early else pos + round(gaps.draw(change) * SAMPLE_RATE)
            pieces.append((pos, clip.audio))
            segments += [Segment(round((pos + a) / SAMPLE_RATE, 3),
                                 round((pos + b) / SAMPLE_RATE, 3), speaker)
                         for a, b in clip.spans]
            end = pos + clip.audio.size
            placed.append(Placed(utt.path, speaker, round(pos / SAMPLE_RATE, 3),
                                 round(end / SAMPLE_RATE, 3), turn))
            if mixer:
                mixer.placed(pieces, segments, clip, speaker, {p.path for p in placed})
            pos = end
    track = np.zeros(pos + round(TAIL_S * SAMPLE_RATE), dtype=np.float32)
    for start, audio in pieces:
        track[start:start + audio.size] += audio
    if mixer:
        segments.sort(key=lambda s: (s.start, s.end, s.speaker))  # as read_rttm gives them
        peak = float(np.max(np.abs(track)))
        if peak > 0.99:  # two voices can add up past full scale: the whole track comes down
            track *= np.float32(0.99 / peak)
    log.info("conversation %d: %.1f s, %d utterances, %d segments",
             index, track.size / SAMPLE_RATE, len(placed), len(segments))
    return track, segments, placed, mixer


def build_conversations(
    material: list[Utterance],
    enroll: list[Utterance],
    spec: ConversationSpec,
    out_dir: str | Path,
) -> list[Conversation]:
    """Write ``spec.n_conversations`` conversations into ``out_dir``, with their truth.

    For conversation i: ``conv{i}.wav`` (16 kHz mono PCM_16), ``conv{i}.rttm``,
    ``conv{i}_enroll.txt`` (the ``enroll`` utterances of its enrolled speakers,
    absolute paths), and for all of them ``conversations.json``. Raises
    VggvoxError when the lists cannot provide the speakers the spec asks for.
    """
    spec.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    enroll_paths = {u.path.resolve() for u in enroll}
    pool = MaterialPool([u for u in material if u.path.resolve() not in enroll_paths],
                        load_audio, spec.level_dbfs)
    enrolls: dict[str, list[Path]] = {}
    for u in enroll:
        enrolls.setdefault(u.speaker, []).append(u.path)
    casts = choose_speakers(pool, set(enrolls), spec, rng)

    conversations: list[Conversation] = []
    for i, (enrolled, strangers) in enumerate(casts):
        track, segments, placed, mixer = _render(i, enrolled, strangers, pool, spec, rng)
        overlap_s, speech_s = overlap_seconds(segments)
        conv = Conversation(
            index=i, wav=out / f"conv{i}.wav", rttm=out / f"conv{i}.rttm",
            enroll_list=out / f"conv{i}_enroll.txt", enrolled=tuple(enrolled),
            strangers=tuple(strangers), duration_s=round(track.size / SAMPLE_RATE, 3),
            segments=tuple(segments), placed=tuple(placed),
            overlaps=tuple(mixer.events) if mixer else (),
            overlap_share=round(overlap_s / speech_s, 4) if mixer and speech_s else None,
        )
        sf.write(str(conv.wav), track, SAMPLE_RATE, subtype="PCM_16")
        write_rttm(conv.rttm, segments, f"conv{i}")
        conv.enroll_list.write_text(
            "".join(f"{p.resolve()} {s}\n" for s in enrolled for p in enrolls[s]), encoding="utf-8"
        )
        conversations.append(conv)
    index = {"spec": spec.as_dict(), "conversations": [c.as_dict() for c in conversations]}
    (out / "conversations.json").write_text(
        json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return conversations


def gap_shares(segments: list[Segment] | tuple[Segment, ...], below: float = 0.3) -> Counter[str]:
    """Counts of gaps between consecutive segments: ``all``, ``short`` (< below),
    and the same at speaker changes (``changes``, ``short_changes``)."""
    counts: Counter[str] = Counter()
    ordered = sorted(segments, key=lambda s: s.start)
    for a, b in itertools.pairwise(ordered):
        gap = b.start - a.end
        counts["all"] += 1
        counts["short"] += gap < below
        if a.speaker != b.speaker:
            counts["changes"] += 1
            counts["short_changes"] += gap < below
    return counts


__all__ = ["Conversation", "ConversationSpec", "Placed", "build_conversations", "gap_shares"]
