"""The per-stream recognizer: 16 kHz PCM in, speech, window scores and turns out.

    rec = Recognizer(Embedder.from_card("campplus"), voiceprints)
    for block in blocks:                 # int16 or float PCM blocks of any size
        for r in rec.feed(block):
            if isinstance(r, TurnUpdate) and r.final:
                print(r.t_start, r.t_end, r.speaker)
    rec.finish()

``feed`` is ``segment`` (VAD and windows: no model) followed by one batched
embedding call and ``decide`` for each item. A runtime that embeds for many
streams at once (the daemon) calls the two halves itself, from two threads:
the segmenter's state belongs to the caller of ``segment``, the decider's to
the caller of ``decide``. No sockets, no threads, no daemon settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vggvox.audio import to_float, to_int16
from vggvox.calibration import AcceptRule, Calibration, from_cosine
from vggvox.modelcard import ModelCard
from vggvox.rooms import Room
from vggvox.stream.decider import TurnConfig, TurnDecider
from vggvox.stream.features import FeatureTrack
from vggvox.stream.identify import Identifier, OpenSetIdentifier
from vggvox.stream.results import Result
from vggvox.stream.segmenter import Pending, Segmenter, Window
from vggvox.stream.unknowns import UnknownClusters, UnknownConfig
from vggvox.stream.vad import SpeechStart, VadConfig
from vggvox.stream.windows import WindowConfig
from vggvox.voiceprints import VoiceprintSet

if TYPE_CHECKING:  # only its type: what imports the stream (the clients) needs no ONNX Runtime
    from vggvox.embedder import Embedder


@dataclass(frozen=True)
class ScoringConfig:
    false_accept: float = 0.005
    """Share of strangers' turns that may be named as an enrolled speaker, whatever
    the number enrolled and the length of the turn (the model's calibration). Half
    of 1 %: on voices it never heard the calibration's measured rate runs up to
    about twice the setting (its check on held-apart speakers), and an utterance
    or a visit is often more than one turn."""
    threshold: float | None = None
    """A raw score that names an enrolled speaker instead (null: from false_accept)."""
    top_k: int = 5
    """Candidates listed with each decision."""
    adapt: bool = True
    """Let each source's rule follow how strangers score on its channel (``vggvox.rooms``;
    the daemon keeps one room per source, in the store). Never looser than the
    calibration. A Recognizer adapts only when it is handed a Room."""

    def rule(self, card: ModelCard, metric: str = "cosine",
             calibration: Calibration | None = None) -> AcceptRule:
        """The open-set rule; ``calibration`` (one fitted on the user's own recordings)
        replaces the card's."""
        return AcceptRule(self.false_accept, self.threshold, calibration or card.calibration,
                          from_cosine(card.threshold, metric), metric)


@dataclass(frozen=True)
class RecognizerConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    turns: TurnConfig = field(default_factory=TurnConfig)
    unknowns: UnknownConfig = field(default_factory=UnknownConfig)
    calibration: Calibration | None = None
    """An open-set calibration used instead of the model card's (``vggvox-client
    calibrate``: fitted on this room's or household's own recordings); None: the card's."""


def merge_rule(card: ModelCard, config: RecognizerConfig) -> AcceptRule:
    """When two unknown voices are one (``unknowns.false_merge``): the online clusters'
    rule, and offline the clusters of a recording and the voices remembered across
    recordings. Clusters compare cosines of their own centroids, whatever the scoring
    metric."""
    calibration = config.calibration or card.calibration
    u = config.unknowns
    return AcceptRule(u.false_merge, u.threshold, calibration, card.threshold)


class Recognizer:
    def __init__(self, embedder: Embedder, voiceprints: VoiceprintSet,
                 config: RecognizerConfig | None = None,
                 identifier: Identifier | None = None, room: Room | None = None) -> None:
        self.config = config = config or RecognizerConfig()
        self.embedder = embedder
        self.voiceprints = voiceprints
        card = embedder.card
        calibration = config.calibration or card.calibration
        self.room = room or Room("", config.scoring.rule(card, voiceprints.scorer.metric,
                                                         calibration), adapt=False)
        """Where the open-set rule comes from (a runtime's room adapts it)."""
        self.identifier = identifier or OpenSetIdentifier(voiceprints, self.room,
                                                          config.scoring.top_k)
        self.unknowns = (UnknownClusters(config.unknowns, merge_rule(card, config),
                                         card.embedding_size)
                         if config.unknowns.enabled else None)
        change = config.turns.change_threshold
        self.segmenter = Segmenter(config.vad, config.window,
                                   features=FeatureTrack.for_card(card))
        self.decider = TurnDecider(self.identifier, config.turns,
                                   card.change_threshold if change is None else change,
                                   card.embedding_size, self.unknowns,
                                   # A threshold the user set is theirs; the card's follows
                                   # the room.
                                   self.room if change is None else None)

    @property
    def rule(self) -> AcceptRule:
        """The open-set rule deciding now."""
        return self.room.rule

    def reset(self) -> None:
        """Start a new stream: sample 0, no open speech, turn ids from 1."""
        self.segmenter.reset()
        self.decider.reset()

    # -- the two halves -----------------------------------------------------------------

    def segment(self, samples: np.ndarray, start: int | None = None) -> list[Pending]:
        """VAD and windows for a block (int16, or float in [-1, 1])."""
        x = np.asarray(samples)
        if x.dtype != np.int16:
            x = to_int16(x)
        return self.segmenter.push(x, start)

    def segment_end(self) -> list[Pending]:
        """End of stream: the pending items that close it."""
        return self.segmenter.finish()

    def embed(self, windows: list[Window]) -> np.ndarray:
        return embed_windows(self.embedder, windows)

    def decide(self, item: Pending, embedding: np.ndarray | None = None) -> list[Result]:
        """Results for one pending item; a Window needs its embedding."""
        if isinstance(item, Window):
            if embedding is None:
                raise ValueError("a window needs its embedding")
            return self.decider.window(item, embedding)
        if isinstance(item, SpeechStart):
            return self.decider.speech_start(item)
        return self.decider.speech_end(item)

    # -- in one call ----------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> list[Result]:
        return self._run(self.segment(samples))

    def finish(self) -> list[Result]:
        return self._run(self.segment_end())

    def _run(self, items: list[Pending]) -> list[Result]:
        windows = [i for i in items if isinstance(i, Window)]
        embs = iter(self.embed(windows)) if windows else iter(())
        out: list[Result] = []
        for item in items:
            out += self.decide(item, next(embs) if isinstance(item, Window) else None)
        return out


def embed_windows(embedder: Embedder, windows: list[Window]) -> np.ndarray:
    """Embeddings of windows, of one stream or of many (the daemon's batches): from
    the frames a stream's FeatureTrack computed where the window has them, else
    from its samples. Both give the same network input."""
    rows = [embedder.frames_input(w.features, len(w.samples)) if w.features is not None
            else embedder.network_input(to_float(w.samples)) for w in windows]
    return embedder.embed_inputs(rows)
