"""Who spoke when in one recording: the streaming engine over a file, then what
knowing the whole file allows.

1. The file goes through the same Recognizer the daemon runs (VAD, sliding
   windows, turns with change detection), fed as fast as it embeds. Every
   window's embedding is kept (``WindowPass``): a cache may hand them back, so
   a rerun with other voiceprints embeds nothing.
2. Each final turn is decided again on ALL of its windows at once: a live turn
   keeps the label it showed until ``hysteresis`` decisions agree on another,
   and its early decisions rest on its first windows only.
3. The turns that named nobody are clustered over the whole file
   (``recluster``); a cluster whose pooled evidence names an enrolled speaker
   takes that name, and the others become ``unknown-1``, ``unknown-2``, ... in
   order of first appearance. A cluster that scores close to an enrolled
   speaker without reaching the cutoff gets a suggestion, never the name (the
   same rule as for remembered voices: ``vggvox.provisional_names.suggest``).
4. With a segmentation model, overlapped speech is marked (``overlap``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.provisional_names import suggest
from vggvox.recording import recluster
from vggvox.recording.segments import (
    UNKNOWN_PREFIX,
    RecordingResult,
    SpeakerSegment,
    Suggestion,
    UnknownVoice,
    file_id_of,
    mark_overlaps,
)
from vggvox.recording.streampass import WindowPass, stream_pass
from vggvox.scoring import l2_normalize
from vggvox.stream.identify import Evidence, Identity
from vggvox.stream.recognizer import Recognizer, RecognizerConfig, merge_rule
from vggvox.stream.results import Result, TurnUpdate
from vggvox.voiceprints import VoiceprintSet

if TYPE_CHECKING:
    from vggvox.embedder import Embedder


class Activity(Protocol):
    def overlaps(self) -> list[tuple[float, float]]: ...

    def changes(self) -> list[float]: ...


class OverlapFinder(Protocol):
    """A segmentation model (``vggvox.recording.overlap.Segmentation``)."""

    def activity(self, audio: np.ndarray) -> Activity: ...


@dataclass(frozen=True)
class IdentifyConfig:
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    recluster: bool = True
    """Cluster the unknown turns again over the whole file (False: the live labels)."""
    name_clusters: bool = True
    """A cluster of unknown turns whose pooled evidence names an enrolled speaker
    takes that name (the same calibrated rule as a single turn)."""
    block_s: float = 1.0
    """Audio handed to the recognizer at a time (any size gives the same turns)."""
    min_confidence: float = 0.5
    """A turn whose calibrated confidence in its label is below this has no decision
    (speaker None; ``candidate`` the label it leaned to, or for a doubtful "nobody" the
    best enrolled speaker): weak evidence says so rather than guess. 0 keeps every
    label, as does a raw threshold (the user's rule, not the calibration's). On the
    built conversations the one such turn was a stranger named at 0.01 (DER is the same
    either way: a wrong name becomes a miss)."""
    snap_changes: bool = True
    """Move a change between two adjacent turns to the segmentation model's change point
    nearest to it (within ``SNAP_S``), where there is a model."""
    live: bool = False
    """Only the streaming pass: each final turn as a live stream (the daemon) ends it,
    with no decision taken again and no re-clustering."""


SNAP_S = 0.75
"""Farthest a change between two turns moves to a change point of the segmentation model:
the streaming pass places a change within about a window's hop of the truth."""


def snap_changes(segments: Sequence[SpeakerSegment], changes: Sequence[float],
                 reach_s: float = SNAP_S) -> list[SpeakerSegment]:
    """Adjacent segments of different speakers, their shared edge moved to the nearest
    change point within ``reach_s`` (never past the middle of either segment)."""
    out = sorted(segments, key=lambda s: (s.start, s.end))
    points = np.sort(np.asarray(changes, dtype=np.float64))
    if not len(points):
        return out
    for k in range(len(out) - 1):
        a, b = out[k], out[k + 1]
        if a.speaker == b.speaker or b.start - a.end > 0.05:
            continue  # the same voice, or a pause: the VAD placed that edge
        edge = (a.end + b.start) / 2
        near = float(points[np.argmin(np.abs(points - edge))])
        lo, hi = (a.start + a.end) / 2, (b.start + b.end) / 2
        if abs(near - edge) <= reach_s and lo < near < hi:
            out[k], out[k + 1] = replace(a, end=near), replace(b, start=near)
    return out


def live_segments(results: Iterable[Result | dict[str, Any]]) -> list[SpeakerSegment]:
    """The final turns of a live stream as segments: from the library's results, or from
    a daemon's ``turn`` events (dicts), which carry the same fields."""
    out = []
    for r in results:
        conf: float | None
        if isinstance(r, TurnUpdate):
            start, end, final = r.t_start, r.t_end, r.final
            speaker, unknown, score, conf = r.speaker, r.unknown, r.score, r.confidence
        elif isinstance(r, dict) and r.get("type") == "turn":
            start, end, final = float(r["t_start"]), float(r["t_end"]), bool(r.get("final"))
            speaker, unknown = r.get("speaker"), r.get("unknown")
            score, conf = float(r.get("score") or 0.0), r.get("confidence")
        else:
            continue
        if final:
            out.append(SpeakerSegment(start, end, speaker or unknown, speaker is not None,
                                      score, conf))
    return sorted(out, key=lambda s: (s.start, s.end))


@dataclass
class _Found:
    """What one run has found so far."""

    segments: list[SpeakerSegment] = field(default_factory=list)
    voices: list[UnknownVoice] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    turns: int = 0
    live_unknown: int = 0


@dataclass
class _Turn:
    start: int
    end: int
    total: np.ndarray
    windows: int
    identity: Identity

    @property
    def speech_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


class RecordingIdentifier:
    """Identify speakers in whole recordings, one at a time (one owner: not thread-safe)."""

    def __init__(self, embedder: Embedder, voiceprints: VoiceprintSet,
                 config: IdentifyConfig | None = None,
                 overlap: OverlapFinder | None = None) -> None:
        self.config = config = config or IdentifyConfig()
        self.recognizer = Recognizer(embedder, voiceprints, config.recognizer)
        self.voiceprints = voiceprints
        self.overlap = overlap
        self.merge_rule = merge_rule(embedder.card, config.recognizer)
        """When two unknown voices are one (the streaming clusters' rule)."""

    def run(self, audio: np.ndarray, path: str | Path = "",
            embeddings: np.ndarray | None = None) -> tuple[RecordingResult, WindowPass]:
        """Who spoke when in ``audio`` (16 kHz mono); also the pass, for a cache."""
        t0 = time.perf_counter()
        wp = stream_pass(self.recognizer, audio, self.config.block_s, embeddings)
        found = _Found()
        if self.config.live:
            found.segments = live_segments(wp.results)
            found.turns = len(found.segments)
        else:
            turns = self._turns(wp)
            found.turns = len(turns)
            found.live_unknown = len({t.identity.unknown for t in turns
                                      if t.identity.speaker is None})
            labels = self._label(turns, found)
            # A raw threshold is the user's rule: the calibration does not overrule it.
            weak = self.config.min_confidence if self.recognizer.rule.calibrated else 0.0
            found.segments = [self._segment(t, label, weak)
                              for t, label in zip(turns, labels, strict=True)]
        overlaps: list[tuple[float, float]] = []
        if self.overlap is not None:
            activity = self.overlap.activity(audio)
            overlaps = activity.overlaps()
            if self.config.snap_changes and not self.config.live:
                found.segments = snap_changes(found.segments, activity.changes())
            found.segments = mark_overlaps(found.segments, overlaps)
        unknown = {s.speaker for s in found.segments if s.speaker and not s.enrolled}
        return RecordingResult(
            str(path), file_id_of(path), len(audio) / SAMPLE_RATE, tuple(found.segments),
            tuple(overlaps), tuple(found.suggestions), time.perf_counter() - t0,
            {"turns": found.turns, "windows": len(wp.embeddings),
             "live_unknown_labels": found.live_unknown, "unknown_labels": len(unknown)},
            tuple(found.voices)), wp

    def _turns(self, wp: WindowPass) -> list[_Turn]:
        """The final turns, each decided again on all of its windows."""
        finals = sorted((r for r in wp.results if isinstance(r, TurnUpdate) and r.final),
                        key=lambda r: (r.start, r.end))
        centres = (wp.starts + wp.ends) // 2
        out = []
        for r in finals:
            inside = np.flatnonzero((centres >= r.start) & (centres < r.end))
            if not len(inside):  # a short turn cut by a change: its most-covering window
                cover = np.minimum(wp.ends, r.end) - np.maximum(wp.starts, r.start)
                inside = np.array([int(np.argmax(cover))]) if len(cover) else inside
            if not len(inside):
                continue
            total = wp.embeddings[inside].sum(axis=0)
            ident = self.recognizer.identifier.identify(
                Evidence(l2_normalize(total), (r.end - r.start) / SAMPLE_RATE, len(inside)))
            out.append(_Turn(r.start, r.end, total, len(inside),
                             replace(ident, unknown=r.unknown)))
        return out

    def _label(self, turns: Sequence[_Turn], found: _Found) -> list[str | None]:
        """Each turn's label; the unknown voices and suggestions go into ``found``."""
        labels: list[str | None] = [t.identity.speaker for t in turns]
        unknown = [i for i, t in enumerate(turns) if t.identity.speaker is None]
        if self.config.recluster:
            groups = recluster.cluster(
                [recluster.TurnEvidence(turns[i].total, turns[i].windows, turns[i].speech_s)
                 for i in unknown], self.merge_rule)
        else:  # the live clusters, numbered again in order of first appearance
            live = list(dict.fromkeys(turns[i].identity.unknown for i in unknown))
            groups = [live.index(turns[i].identity.unknown) for i in unknown]
        for g in range(max(groups, default=-1) + 1):
            idx = [i for i, k in zip(unknown, groups, strict=True) if k == g]
            total = np.sum([turns[i].total for i in idx], axis=0)
            speech = sum(turns[i].speech_s for i in idx)
            windows = sum(turns[i].windows for i in idx)
            ident = self.recognizer.identifier.identify(
                Evidence(l2_normalize(total), speech, windows))
            if self.config.recluster and self.config.name_clusters and ident.speaker:
                for i in idx:
                    turns[i].identity = replace(ident, unknown=None)
                    labels[i] = ident.speaker
                continue
            label = f"{UNKNOWN_PREFIX}{len(found.voices) + 1}"
            for i in idx:
                labels[i] = label
            found.voices.append(UnknownVoice(
                label, total.astype(np.float32), windows, speech,
                min(turns[i].start for i in idx) / SAMPLE_RATE,
                max(turns[i].end for i in idx) / SAMPLE_RATE))
            snap = self.voiceprints.snapshot()
            close = suggest(total, speech, (snap.names, snap.matrix), self.recognizer.rule)
            if close is not None:
                found.suggestions.append(Suggestion(label, close[0], close[1]))
        return labels

    @staticmethod
    def _segment(t: _Turn, label: str | None, min_confidence: float) -> SpeakerSegment:
        ident = t.identity
        enrolled = ident.speaker is not None and label == ident.speaker
        score = float(ident.score) if ident.top else float("nan")
        if ident.confidence is not None and ident.confidence < min_confidence:
            # Unsure of "nobody enrolled" is leaning to the best enrolled speaker.
            lean = label if enrolled or not ident.top else ident.top[0].name
            return SpeakerSegment(t.start / SAMPLE_RATE, t.end / SAMPLE_RATE, None, False,
                                  score, ident.confidence, candidate=lean)
        return SpeakerSegment(t.start / SAMPLE_RATE, t.end / SAMPLE_RATE, label, enrolled,
                              score, ident.confidence)
