"""Who speaks in the synthetic conversations, and in which order.

Kept apart from the audio layout (vggvox.eval.conversations) so that the
choices, where all the randomness and all the preferences live, read on
their own. Every draw comes from the one generator the caller passes in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from vggvox.errors import AudioError, VggvoxError
from vggvox.eval.lists import Utterance
from vggvox.eval.speech import Clip, make_clip

if TYPE_CHECKING:
    from vggvox.eval.conversations import ConversationSpec

log = logging.getLogger(__name__)

# Past this share of the duration, a stranger who has not spoken yet gets the next turn.
_STRANGER_DEADLINE = 0.6
# How strongly speakers who have talked less are favoured: a speaker this many
# seconds behind the leader is twice as likely to get the turn.
_CATCH_UP_S = 10.0


class MaterialPool:
    """The usable utterances of each speaker, their lengths, and their trimmed audio.

    Lengths come from the file headers so that choosing speakers reads no audio;
    audio is loaded, trimmed and kept only for the utterances actually drawn.
    """

    def __init__(self, utterances: Sequence[Utterance], loader: Callable[[Path], np.ndarray],
                 level_dbfs: float | None) -> None:
        self._loader = loader
        self._level = level_dbfs
        self._clips: dict[Path, Clip | None] = {}
        self.seconds: dict[Path, float] = {}
        self.by_speaker: dict[str, list[Utterance]] = {}
        for u in utterances:
            if u.path in self.seconds:
                continue
            try:
                info = sf.info(str(u.path))
            except (sf.LibsndfileError, RuntimeError, OSError) as e:
                log.warning("%s: left out of the material: %s", u.path, e)
                continue
            self.seconds[u.path] = info.frames / info.samplerate
            self.by_speaker.setdefault(u.speaker, []).append(u)

    @property
    def speakers(self) -> list[str]:
        return sorted(self.by_speaker)

    def source(self, speaker: str) -> str:
        """The corpus a speaker comes from, as the lists lay it out: source/speaker/utt."""
        return self.by_speaker[speaker][0].path.parent.parent.name

    def total(self, speaker: str) -> float:
        return sum(self.seconds[u.path] for u in self.by_speaker[speaker])

    def clip(self, utt: Utterance) -> Clip | None:
        """The trimmed utterance, or None (logged once) if it has no usable speech."""
        if utt.path not in self._clips:
            try:
                self._clips[utt.path] = make_clip(self._loader(utt.path), self._level)
            except AudioError as e:
                log.warning("left out of the material: %s", e)
                self._clips[utt.path] = None
            if self._clips[utt.path] is None:
                log.warning("%s: no speech found, left out of the material", utt.path)
        return self._clips[utt.path]


def _greedy(
    candidates: list[str],
    k: int,
    key: Callable[[str, Counter[str]], tuple[object, ...]],
    pool: MaterialPool,
    rng: np.random.Generator,
) -> list[str]:
    """Pick ``k`` speakers one at a time by ``key`` (given the sources already
    picked), random among equals."""
    noise = dict(zip(candidates, rng.random(len(candidates)), strict=True))
    sources: Counter[str] = Counter()
    chosen: list[str] = []
    for _ in range(k):
        best = min((s for s in candidates if s not in chosen),
                   key=lambda s: (*key(s, sources), noise[s]))
        chosen.append(best)
        sources[pool.source(best)] += 1
    return sorted(chosen)


def choose_speakers(
    pool: MaterialPool, enrollable: set[str], spec: ConversationSpec, rng: np.random.Generator
) -> list[tuple[list[str], list[str]]]:
    """(enrolled, strangers) of each conversation; the preferences are in order of the keys."""
    stranger_share = spec.stranger_fraction if spec.n_strangers else 0.0
    enrolled_need = spec.duration_s * (1 - stranger_share) / spec.n_enrolled
    stranger_need = spec.duration_s * stranger_share / max(spec.n_strangers, 1)
    cands = [s for s in pool.speakers if s in enrollable]
    if len(cands) < spec.n_enrolled:
        raise VggvoxError(
            f"only {len(cands)} speakers have both enrollment utterances and material; "
            f"a conversation needs {spec.n_enrolled} enrolled speakers"
        )
    used: Counter[str] = Counter()
    casts_enrolled = []
    for _ in range(spec.n_conversations):
        chosen = _greedy(cands, spec.n_enrolled, lambda s, src: (
            pool.total(s) < enrolled_need, used[s], src[pool.source(s)]), pool, rng)
        used.update(chosen)
        casts_enrolled.append(chosen)

    all_enrolled = set(used)
    used_as_stranger: Counter[str] = Counter()
    casts = []
    for enrolled in casts_enrolled:
        others = [s for s in pool.speakers if s not in enrolled]
        if len(others) < spec.n_strangers:
            raise VggvoxError(
                f"only {len(others)} speakers with material are left besides the enrolled "
                f"{', '.join(enrolled)}; a conversation needs {spec.n_strangers} strangers"
            )
        strangers = _greedy(others, spec.n_strangers, lambda s, src: (
            s in all_enrolled, used_as_stranger[s], pool.total(s) < stranger_need,
            src[pool.source(s)]), pool, rng)
        used_as_stranger.update(strangers)
        casts.append((enrolled, strangers))
    return casts


def plan_turns(
    enrolled: list[str],
    strangers: list[str],
    pool: MaterialPool,
    spec: ConversationSpec,
    rng: np.random.Generator,
    now: Callable[[], float],
) -> Iterator[tuple[str, list[Utterance]]]:
    """Yield (speaker, utterances) turns until ``now()`` (the length so far, which
    the caller advances as it lays turns out) reaches the duration and everyone spoke.

    Strangers get ``stranger_fraction`` of the turns, drawn so that the count
    stays within one turn of it. Within a group, those who have not spoken go
    first, then those who have spoken least are likelier, so that every
    enrolled speaker gets enough time to be scored. An utterance comes back
    only when its speaker has none left unused.
    """
    everyone = enrolled + strangers
    unused = {s: [pool.by_speaker[s][j] for j in rng.permutation(len(pool.by_speaker[s]))]
              for s in everyone}
    talked = dict.fromkeys(everyone, 0.0)
    prev: str | None = None
    n_turns = n_stranger_turns = 0

    def pick(group: list[str]) -> str | None:
        eligible = [s for s in group if s != prev and unused[s]]
        eligible = [s for s in eligible if talked[s] == 0] or eligible
        if not eligible:
            return None
        lead = max(talked[s] for s in eligible)
        weights = np.array([lead - talked[s] + _CATCH_UP_S for s in eligible])
        return eligible[int(rng.choice(len(eligible), p=weights / weights.sum()))]

    while now() < spec.duration_s or not all(talked.values()):
        share = spec.stranger_fraction * (n_turns + 1) - n_stranger_turns
        late = now() >= _STRANGER_DEADLINE * spec.duration_s and any(
            talked[s] == 0 and s != prev for s in strangers)
        stranger_turn = bool(strangers) and (rng.random() < share or late)
        groups = (strangers, enrolled) if stranger_turn else (enrolled, strangers)
        speaker = pick(groups[0]) or pick(groups[1])
        if speaker is None:  # everyone eligible is out of material: reuse
            eligible = [s for s in groups[0] if s != prev] or [s for s in groups[1] if s != prev]
            speaker = eligible[int(rng.integers(len(eligible)))]
            unused[speaker] = _reused(speaker, pool, rng)
        turn, length = _fill_turn(unused[speaker], pool, spec, rng)
        if turn:
            talked[speaker] += length
            n_turns += 1
            n_stranger_turns += speaker in strangers
            prev = speaker
            yield speaker, turn


def _reused(speaker: str, pool: MaterialPool, rng: np.random.Generator) -> list[Utterance]:
    """A speaker's usable utterances again, in a new order: all of them were used."""
    log.warning("speaker %s: material used up, utterances come back", speaker)
    good = [u for u in pool.by_speaker[speaker] if pool.clip(u) is not None]
    if not good:
        raise VggvoxError(f"speaker {speaker}: none of the material has usable speech")
    return [good[j] for j in rng.permutation(len(good))]


def _fill_turn(unused: list[Utterance], pool: MaterialPool, spec: ConversationSpec,
               rng: np.random.Generator) -> tuple[list[Utterance], float]:
    """One turn: the next of a speaker's ``unused`` utterances (taken off it), as many
    as drawn from ``utterances_per_turn`` that fit ``max_turn_s``; and its seconds."""
    lo, hi = spec.utterances_per_turn
    want = int(rng.integers(lo, hi + 1))
    turn: list[Utterance] = []
    length = 0.0
    while len(turn) < want and unused:
        if turn and length + pool.seconds[unused[0].path] > spec.max_turn_s:
            break
        u = unused.pop(0)
        clip = pool.clip(u)
        if clip is not None:
            turn.append(u)
            length += clip.seconds
    return turn, length
