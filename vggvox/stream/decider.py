"""The turn decider: window embeddings in, speaker turns out.

A turn opens at speech start, or where a change of speaker is detected inside
a speech segment; it closes at speech end or at the next change. Its label is
decided on all of its evidence so far (the normalised sum of its window
embeddings), so it gets surer as the turn goes on, and it only changes after
``hysteresis`` decisions in a row agree on the new one.

Change detection: a window whose embedding is far from the open turn's
(cosine below ``change_threshold``) is held back, not added. If the next one
agrees with the turn again, the odd one is dropped as a blip; after
``change_windows`` held-back windows in a row, the turn ends at the estimated
change point and a new one starts there. Windows cover more than a hop, so
those that straddle the change hold both voices: the new turn only takes
those with at most ``straddle`` of their length before the change.
In a room whose voices are alike (``vggvox.rooms``), two speakers' windows are
closer than the card's ``change_threshold`` expects: with a room, the
threshold is raised as far as the room's strangers score above the
calibration's, so that a change between them is still seen.

One owner (thread) per decider; no I/O, no clocks: the same windows always
give the same turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from vggvox.audio import SAMPLE_RATE, drop_latest, keep_latest
from vggvox.calibration import AcceptRule
from vggvox.rooms import Room
from vggvox.scoring import l2_normalize
from vggvox.stream.identify import Evidence, Identifier, Identity
from vggvox.stream.results import Result, SpeechEnded, SpeechStarted, TurnUpdate, WindowScore
from vggvox.stream.segmenter import Window
from vggvox.stream.unknowns import UnknownClusters
from vggvox.stream.vad import SpeechEnd, SpeechStart


@dataclass(frozen=True)
class TurnConfig:
    change_threshold: float | None = None
    """Cosine to the turn's evidence below which a window sounds like someone else;
    null takes the model card's ``change_threshold``."""
    change_windows: int = 2
    """Windows in a row that must sound like someone else to make a change."""
    min_turn_windows: int = 2
    """Windows a turn needs before a change can be detected in it."""
    hysteresis: int = 2
    """Decisions in a row a new label needs to replace a turn's current one."""
    straddle: float = 0.25
    """Most of a window's length that may lie before a change for it to count in
    the new turn."""


@dataclass
class _Turn:
    id: int
    start: int
    end: int
    total: np.ndarray
    windows: int = 0
    labels: list[str | None] = field(default_factory=list)
    shown: Identity | None = None
    challenger: tuple[str | None, str | None] | None = None
    streak: int = 0
    speech: list[np.ndarray] = field(default_factory=list)
    """The turn's audio (int16 chunks, latest ``keep`` samples), kept only for
    unknown-voice clusters, so that a person can later name and enroll them."""
    speech_end: int = 0

    @property
    def embedding(self) -> np.ndarray:
        return l2_normalize(self.total)


class TurnDecider:
    def __init__(self, identifier: Identifier, config: TurnConfig, change_threshold: float,
                 dim: int, unknowns: UnknownClusters | None = None,
                 room: Room | None = None) -> None:
        self.identifier = identifier
        self.config = config
        self.change_threshold = change_threshold
        self.room = room
        """Raises ``change_threshold`` as its rule moves (None: the threshold as given)."""
        self._cut: tuple[AcceptRule, float] | None = None
        self.dim = dim
        self.unknowns = unknowns
        """Clusters of the voices that name nobody enrolled (None: no clustering)."""
        self._keep = (round(unknowns.config.keep_speech_s * SAMPLE_RATE)
                      if unknowns is not None else 0)
        self.reset()

    def reset(self) -> None:
        if self.unknowns is not None:
            self.unknowns.reset()
        self._turn: _Turn | None = None
        self._held: list[tuple[Window, np.ndarray, str | None]] = []
        self._seg_start: int | None = None
        self._last_agree_end: int | None = None
        self.turns = 0
        """Turns opened so far: the next turn's id."""

    # -- inputs, in stream order ----------------------------------------------------------

    def speech_start(self, ev: SpeechStart) -> list[Result]:
        out = self._close(ev.sample)
        self._seg_start = ev.sample
        return [*out, SpeechStarted(ev.sample, ev.sample)]

    def speech_end(self, ev: SpeechEnd) -> list[Result]:
        start = self._seg_start if self._seg_start is not None else ev.sample
        out = self._close(ev.sample)
        self._seg_start = None
        return [*out, SpeechEnded(start, ev.sample)]

    def window(self, w: Window, embedding: np.ndarray) -> list[Result]:
        alone = self.identifier.identify(Evidence(embedding, (w.end - w.start) / SAMPLE_RATE))
        out: list[Result] = [WindowScore(w.start, w.end, alone.speaker, alone.score, alone.top)]
        turn = self._turn
        if turn is None:
            start = self._seg_start if self._seg_start is not None else w.start
            self._turn = turn = self._open(start)
        elif (turn.windows >= self.config.min_turn_windows
              and float(embedding @ turn.embedding) < self._change_cut(w)):
            self._held.append((w, embedding, alone.speaker))
            if len(self._held) < self.config.change_windows:
                return out
            return out + self._change(turn)
        self._held.clear()
        self._add(turn, w, embedding, alone.speaker)
        self._last_agree_end = w.end
        return [*out, self._update(turn)]

    def _change_cut(self, w: Window) -> float:
        """The change threshold, as the room has raised it (worked out again only when
        the room's rule is replaced)."""
        if self.room is None:
            return self.change_threshold
        rule = self.room.rule
        if self._cut is None or self._cut[0] is not rule:
            self._cut = rule, rule.raised(self.change_threshold, (w.end - w.start) / SAMPLE_RATE)
        return self._cut[1]

    # -- turns ------------------------------------------------------------------------------

    def _open(self, start: int) -> _Turn:
        self.turns += 1
        return _Turn(self.turns, start, start, np.zeros(self.dim, dtype=np.float32),
                     speech_end=start)

    def _add(self, turn: _Turn, w: Window, embedding: np.ndarray, label: str | None) -> None:
        turn.total = turn.total + embedding
        turn.windows += 1
        turn.labels.append(label)
        turn.end = max(turn.end, w.end)
        if self._keep:
            # Windows overlap: keep only the samples this one adds after the last.
            new = w.samples[max(0, turn.speech_end - w.start):]
            if len(new):
                turn.speech.append(new)
                turn.speech_end = w.end
            keep_latest(turn.speech, self._keep)

    def _change(self, turn: _Turn) -> list[Result]:
        first = self._held[0][0]
        # The change lies between the centres of the last window that agreed and the
        # first that did not: take the middle.
        before = self._last_agree_end if self._last_agree_end is not None else first.end
        length = first.end - first.start
        at = int(min(max((before + first.end) / 2 - length / 2, turn.start), first.end))
        held = list(self._held)  # closing the old turn forgets them
        out = self._close(at)
        new = self._turn = self._open(at)
        clean = [(w, e, lab) for w, e, lab in held
                 if at - w.start <= self.config.straddle * (w.end - w.start)]
        for w, e, lab in clean or held[-1:]:
            self._add(new, w, e, lab)
        self._last_agree_end = new.end
        return [*out, self._update(new)]

    def _update(self, turn: _Turn) -> TurnUpdate:
        speech_s = (turn.end - turn.start) / SAMPLE_RATE
        ident = self.identifier.identify(Evidence(turn.embedding, speech_s, turn.windows,
                                                  tuple(turn.labels)))
        if ident.speaker is None and self.unknowns is not None:
            label = self.unknowns.assign(turn.id, turn.embedding, speech_s, turn.end)
            ident = replace(ident, unknown=label)
        if turn.shown is None or ident.key == turn.shown.key:
            turn.shown, turn.challenger, turn.streak = ident, None, 0
        else:
            turn.streak = turn.streak + 1 if ident.key == turn.challenger else 1
            turn.challenger = ident.key
            if turn.streak >= self.config.hysteresis:
                turn.shown, turn.challenger, turn.streak = ident, None, 0
        if turn.shown is not ident:
            # The old label holds for now: show its score on today's evidence.
            score = next((m.score for m in ident.top if m.name == turn.shown.speaker),
                         turn.shown.score)
            turn.shown = Identity(turn.shown.speaker, turn.shown.unknown, score,
                                  turn.shown.confidence, ident.top)
        return self._emit(turn, final=False)

    def _emit(self, turn: _Turn, final: bool) -> TurnUpdate:
        shown = turn.shown
        assert shown is not None
        speaker, unknown = shown.speaker, shown.unknown
        if unknown is not None and self.unknowns is not None:
            # Named by a person while this turn still showed it: report the name.
            name = self.unknowns.named(unknown)
            if name is not None:
                speaker, unknown = name, None
        return TurnUpdate(turn.start, turn.end, turn.id, speaker, unknown,
                          shown.score, shown.confidence, shown.top, final, turn.windows)

    def _close(self, at: int) -> list[Result]:
        turn, self._turn = self._turn, None
        self._held.clear()
        self._last_agree_end = None
        if turn is None or turn.shown is None:
            return []
        turn.end = at
        if self._keep and turn.speech_end > at:
            # A change ended the turn before its last window: that audio is the next voice's.
            drop_latest(turn.speech, turn.speech_end - at)
        final = self._emit(turn, final=True)
        if turn.challenger is None:  # its answer is settled: a rule may learn from it
            self.identifier.learn(Evidence(turn.embedding, (at - turn.start) / SAMPLE_RATE,
                                           turn.windows), turn.shown)
        if self.unknowns is not None:
            shown = turn.shown
            self.unknowns.commit(turn.id, shown.unknown if shown.speaker is None else None,
                                 turn.total, turn.speech, at)
            self.unknowns.expire(at)
        return [final]
