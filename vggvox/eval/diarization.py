"""Who spoke when, scored by pyannote.metrics: a scorer nobody here wrote.

Truth (RTTM ``Segment``s) and output (``SpeakerSegment``s; a segment with no
speaker is no decision and is left out, so its time counts as missed) become
pyannote.core Annotations, and pyannote.metrics gives:

- **DER** with its missed, false-alarm and confusion parts (DiarizationErrorRate:
  labels mapped one-to-one by the Hungarian algorithm, names ignored);
- **JER** (JaccardErrorRate: every true speaker weighs the same);
- **IER**, identification error rate *with names* (IdentificationErrorRate):
  an enrolled speaker is right only under their own name. Strangers cannot be
  named; they are right under an unknown label used consistently: each true
  stranger is mapped to the unknown label (``unknown-N``) that covers most of
  their time, by an optimal one-to-one mapping (pyannote's HungarianMapper)
  between strangers and unknown labels alone, computed on the scored time. A
  stranger split over two labels is right on the main one only, and one label
  over two strangers is right for one of them: both are counted as confusion.
  An enrolled speaker's time under an unknown label is confusion too.
- **unknown-voice purity** (DiarizationPurity of the unknown labels against the
  truth, over true speech: a label's time over silence is DER's false alarm,
  not impurity), the strangers' **coverage** by their main unknown label
  (DiarizationCoverage), and **clusters per stranger**: the unknown labels that
  cover at least ``CLUSTER_SHARE`` (5 %) of a stranger's scored time, averaged
  over the strangers that have one (``strangers_clustered`` says how many);
  a stranger under no unknown label was named or missed, which IER counts;
- **overlap detection** precision and recall: the truth's overlapped speech
  (two or more speakers) against the detected regions (``RecordingResult.
  overlaps``), by DetectionPrecisionRecallFMeasure.

Collar: ``collar`` is the seconds unscored *each side* of a true boundary, as
NIST md-eval's ``-c 0.25`` and this project's own scorer; pyannote.metrics
takes the whole width, so it is given twice that. Overlap detection has its
own collar, 0 by default: overlaps last 0.5-2.5 s, and 0.25 s off each side
would leave little of a short one to score. Every figure but overlap
detection comes twice: with overlapped speech scored and with it skipped
(``skip_overlap``).

Several recordings pool as pyannote pools them: the metrics' components
(seconds, counts) add up, and the rates come from the sums.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np
from pyannote.core import Annotation, Timeline
from pyannote.core import Segment as Span
from pyannote.metrics.detection import DetectionPrecisionRecallFMeasure
from pyannote.metrics.diarization import (
    DiarizationCoverage,
    DiarizationErrorRate,
    DiarizationPurity,
    JaccardErrorRate,
)
from pyannote.metrics.identification import IdentificationErrorRate
from pyannote.metrics.matcher import HungarianMapper

from vggvox.recording.rttm import Segment
from vggvox.recording.segments import SpeakerSegment

COLLAR_S = 0.25
CLUSTER_SHARE = 0.05
"""An unknown label counts as one of a stranger's clusters from this share of their time."""

Details = dict[str, float]


def annotation(segments: Iterable[Segment | SpeakerSegment], uri: str = "recording"
               ) -> Annotation:
    """A pyannote Annotation of the labelled segments (no-decision and empty ones left out)."""
    out = Annotation(uri=uri)
    for i, s in enumerate(segments):
        if s.speaker is not None and s.end > s.start:
            out[Span(s.start, s.end), i] = s.speaker
    return out


def timeline(regions: Iterable[tuple[float, float]], uri: str = "recording") -> Timeline:
    return Timeline([Span(a, b) for a, b in regions if b > a], uri=uri)


def stranger_mapping(reference: Annotation, hypothesis: Annotation,
                     strangers: Collection[str], unknowns: Collection[str]) -> dict[str, str]:
    """Unknown label -> true stranger, one-to-one, most shared time in all."""
    return dict(HungarianMapper()(hypothesis.subset(unknowns), reference.subset(strangers)))


@dataclass(frozen=True)
class ModeScore:
    """The figures of one scoring mode: overlapped speech scored, or skipped."""

    skip_overlap: bool
    scored_s: float
    """True speech scored (DER's denominator; overlapped seconds count once per speaker)."""
    missed_s: float
    false_alarm_s: float
    confusion_s: float
    der: float | None
    jer: float | None
    ier: float | None
    ier_confusion_s: float
    """Time under a wrong name (IER's missed and false alarm are DER's)."""
    unknown_s: float
    """Time under unknown labels over true speech: what purity is measured on."""
    unknown_purity: float | None
    stranger_s: float
    stranger_coverage: float | None
    strangers: int
    strangers_clustered: int
    clusters: int
    """Unknown labels over CLUSTER_SHARE of a stranger's time, summed over strangers."""

    @property
    def clusters_per_stranger(self) -> float | None:
        return self.clusters / self.strangers_clustered if self.strangers_clustered else None

    def as_dict(self) -> dict[str, Any]:
        d = {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}
        cps = self.clusters_per_stranger
        d["clusters_per_stranger"] = None if cps is None else round(cps, 4)
        return d


@dataclass(frozen=True)
class OverlapDetection:
    recordings: int
    truth_s: float
    detected_s: float
    hit_s: float

    @property
    def precision(self) -> float | None:
        return self.hit_s / self.detected_s if self.detected_s else None

    @property
    def recall(self) -> float | None:
        return self.hit_s / self.truth_s if self.truth_s else None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: round(v, 6) for k, v in asdict(self).items()}
        d["recordings"] = self.recordings
        for k in ("precision", "recall"):
            v = getattr(self, k)
            d[k] = None if v is None else round(v, 6)
        return d


@dataclass(frozen=True)
class DiarizationScore:
    recordings: int
    collar_s: float
    with_overlap: ModeScore
    without_overlap: ModeScore
    overlap: OverlapDetection | None
    """None where no overlap detection was given."""

    def as_dict(self) -> dict[str, Any]:
        return {"recordings": self.recordings, "collar_s": self.collar_s,
                "with_overlap": self.with_overlap.as_dict(),
                "without_overlap": self.without_overlap.as_dict(),
                "overlap_detection": None if self.overlap is None else self.overlap.as_dict()}


def _rate(v: float, total: float) -> float | None:
    return v if total > 0 else None


class _Mode:
    """pyannote's metric objects for one scoring mode; they accumulate over recordings."""

    def __init__(self, collar: float, skip_overlap: bool) -> None:
        self.skip_overlap = skip_overlap
        width = 2 * collar  # pyannote's collar is the whole width around a boundary
        self.der = DiarizationErrorRate(collar=width, skip_overlap=skip_overlap)
        self.jer = JaccardErrorRate(collar=width, skip_overlap=skip_overlap)
        self.ier = IdentificationErrorRate(collar=width, skip_overlap=skip_overlap)
        self.purity = DiarizationPurity()
        self.coverage = DiarizationCoverage()
        self.clusters = np.zeros(3, dtype=np.int64)  # strangers, clustered, clusters

    def add(self, ref: Annotation, hyp: Annotation, uem: Timeline, strangers: set[str],
            unknowns: set[str]) -> ModeScore:
        der = self.der(ref, hyp, uem=uem, detailed=True)
        jer = self.jer(ref, hyp, uem=uem, detailed=True)
        # The scored time, as DER scores it: the stranger mapping, purity and clusters
        # are measured on it too.
        r, h = cast(tuple[Annotation, Annotation], self.der.uemify(
            ref, hyp, uem=uem, collar=self.der.collar, skip_overlap=self.skip_overlap))
        mapping = stranger_mapping(r, h, strangers, unknowns)
        ier = self.ier(ref, hyp.rename_labels(mapping=mapping), uem=uem, detailed=True)
        unknown = h.subset(unknowns).crop(r.get_timeline().support())
        purity = self.purity(r, unknown, detailed=True)
        coverage = self.coverage(r.subset(strangers), unknown, detailed=True)
        counts = _cluster_counts(r.subset(strangers), unknown)
        self.clusters += counts
        return self._score(der, jer, ier, purity, coverage, counts)

    def total(self) -> ModeScore:
        return self._score(self.der.accumulated_, self.jer.accumulated_,
                           self.ier.accumulated_, self.purity.accumulated_,
                           self.coverage.accumulated_, self.clusters)

    def _score(self, der: Details, jer: Details, ier: Details, purity: Details,
               coverage: Details, counts: np.ndarray) -> ModeScore:
        total = der["total"]
        return ModeScore(
            skip_overlap=self.skip_overlap, scored_s=total,
            missed_s=der["missed detection"], false_alarm_s=der["false alarm"],
            confusion_s=der["confusion"],
            der=_rate(self.der.compute_metric(der), total),
            jer=_rate(self.jer.compute_metric(jer), jer["speaker count"]),
            ier=_rate(self.ier.compute_metric(ier), total), ier_confusion_s=ier["confusion"],
            unknown_s=purity["total"],
            unknown_purity=_rate(self.purity.compute_metric(purity), purity["total"]),
            stranger_s=coverage["total"],
            stranger_coverage=_rate(self.coverage.compute_metric(coverage), coverage["total"]),
            strangers=int(counts[0]), strangers_clustered=int(counts[1]),
            clusters=int(counts[2]))


def _cluster_counts(strangers: Annotation, unknown: Annotation) -> np.ndarray:
    """(strangers with scored time, those under an unknown label, their clusters)."""
    labels = strangers.labels()
    if not labels:
        return np.zeros(3, dtype=np.int64)
    if not unknown.labels():
        return np.array([len(labels), 0, 0])
    shared = strangers * unknown  # seconds of each stranger (row) under each label (column)
    own = np.array([strangers.label_duration(s) for s in labels])
    per = np.sum(shared >= CLUSTER_SHARE * own[:, None], axis=1)
    return np.array([len(labels), int(np.sum(per > 0)), int(np.sum(per))])


class DiarizationScorer:
    """Scores recordings one at a time (``add``) and pooled (``total``)."""

    def __init__(self, collar: float = COLLAR_S, overlap_collar: float = 0.0) -> None:
        self.collar = collar
        self._modes = (_Mode(collar, False), _Mode(collar, True))
        self._overlap = DetectionPrecisionRecallFMeasure(collar=2 * overlap_collar)
        self._recordings = 0
        self._with_overlaps = 0

    def add(self, truth: Iterable[Segment], output: Iterable[SpeakerSegment],
            enrolled: Collection[str], overlaps: Sequence[tuple[float, float]] | None = None,
            duration_s: float | None = None, uri: str = "recording") -> DiarizationScore:
        """Score one recording. ``enrolled``: the names that could be given (the truth's
        other speakers are strangers); ``overlaps``: the detected overlapped speech (None:
        not detected, not scored); ``duration_s``: the recording's length (default: up to
        the last segment of either side)."""
        output = list(output)
        ref, hyp = annotation(truth, uri), annotation(output, uri)
        if duration_s is not None:
            uem = Timeline([Span(0.0, duration_s)], uri=uri)
        else:
            extent = ref.get_timeline().union(hyp.get_timeline()).extent()
            uem = Timeline([extent] if extent else [], uri=uri)
        strangers = {s for s in ref.labels() if s not in enrolled}
        unknowns = {s.speaker for s in output if s.speaker is not None and not s.enrolled}
        modes = [m.add(ref, hyp, uem, strangers, unknowns) for m in self._modes]
        self._recordings += 1
        detection = None
        if overlaps is not None:
            truth_overlap = ref.get_overlap().to_annotation()
            found = timeline(overlaps, uri).support().to_annotation()
            d = self._overlap(truth_overlap, found, uem=uem, detailed=True)
            self._with_overlaps += 1
            detection = _detection(d, 1)
        return DiarizationScore(1, self.collar, modes[0], modes[1], detection)

    def total(self) -> DiarizationScore:
        """Every recording added so far, pooled."""
        detection = (_detection(self._overlap.accumulated_, self._with_overlaps)
                     if self._with_overlaps else None)
        return DiarizationScore(self._recordings, self.collar, self._modes[0].total(),
                                self._modes[1].total(), detection)


def _detection(d: Details, recordings: int) -> OverlapDetection:
    return OverlapDetection(recordings, truth_s=d["relevant"], detected_s=d["retrieved"],
                            hit_s=d["relevant retrieved"])


def score_recording(truth: Iterable[Segment], output: Iterable[SpeakerSegment],
                    enrolled: Collection[str], *,
                    overlaps: Sequence[tuple[float, float]] | None = None,
                    duration_s: float | None = None, collar: float = COLLAR_S,
                    uri: str = "recording") -> DiarizationScore:
    """One recording's figures (``DiarizationScorer.add``)."""
    return DiarizationScorer(collar).add(truth, output, enrolled, overlaps, duration_s, uri)
