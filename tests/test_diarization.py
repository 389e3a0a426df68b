"""Diarization scores by pyannote.metrics (vggvox.eval.diarization), on hand-made
timelines whose answers are worked out by hand, and RTTM read back by pyannote's
own loader. Fast: no audio, no model."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyannote.metrics", reason="the eval extra (pip install 'vggvox[eval]')")

from pyannote.core import Timeline
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from vggvox.eval.diarization import (
    DiarizationScorer,
    annotation,
    score_recording,
)
from vggvox.recording.identify import live_segments
from vggvox.recording.rttm import Segment, read_rttm, write_rttm
from vggvox.recording.segments import SpeakerSegment
from vggvox.stream.results import SpeechEnded, TurnUpdate
from vggvox_client import evaluate

# A (enrolled) 0-10, B (enrolled) 10-20, X (stranger) 20-30, A 30-40. With the 0.25 s
# collar each side of every boundary: 40 - 0.25 - 0.25 - 3 * 0.5 = 38 s scored, 9.5 s a turn.
TRUTH = [Segment(0, 10, "A"), Segment(10, 20, "B"), Segment(20, 30, "X"), Segment(30, 40, "A")]
ENROLLED = {"A", "B"}


def out(*spans: tuple[float, float, str | None]) -> list[SpeakerSegment]:
    """Output segments; a label starting with 'unknown-' is an unknown voice's."""
    return [SpeakerSegment(a, b, s, s is not None and not s.startswith("unknown-"), 0.5, None)
            for a, b, s in spans]


PERFECT = out((0, 10, "A"), (10, 20, "B"), (20, 30, "unknown-3"), (30, 40, "A"))


def test_perfect_output_scores_zero() -> None:
    s = score_recording(TRUTH, PERFECT, ENROLLED, duration_s=40)
    for m in (s.with_overlap, s.without_overlap):
        assert m.scored_s == pytest.approx(38)
        assert (m.der, m.jer, m.ier) == (0, 0, 0)
        assert m.missed_s == m.false_alarm_s == m.confusion_s == 0
        assert m.unknown_purity == 1 and m.stranger_coverage == 1
        assert (m.strangers, m.strangers_clustered, m.clusters_per_stranger) == (1, 1, 1.0)
    assert s.overlap is None  # no detection given: not scored
    d = s.as_dict()
    assert d["with_overlap"]["der"] == 0 and d["overlap_detection"] is None


def test_swapped_speakers() -> None:
    # A and B swapped over the first two turns. DER maps labels freely: output B <-> A
    # and output A <-> B (9.5 s each beats 9.5 s for A <-> A alone), so only the last
    # turn (true A, output A, mapped to B) is confusion. IER needs the names: two turns.
    swapped = out((0, 10, "B"), (10, 20, "A"), (20, 30, "unknown-3"), (30, 40, "A"))
    m = score_recording(TRUTH, swapped, ENROLLED, duration_s=40).with_overlap
    assert m.confusion_s == pytest.approx(9.5) and m.der == pytest.approx(9.5 / 38)
    assert m.ier_confusion_s == pytest.approx(19) and m.ier == pytest.approx(0.5)
    # JER: true A (19 s) against output B (9.5 s): 0.5; true B (9.5 s) against output
    # A (19 s): 0.5; X: 0. Their mean: 1/3.
    assert m.jer == pytest.approx(1 / 3)


def test_collar_and_no_decision() -> None:
    late = out((0, 10.2, "A"), (10.2, 20, "B"), (20, 30, "unknown-1"), (30, 40, "A"))
    assert score_recording(TRUTH, late, ENROLLED, duration_s=40).with_overlap.der == 0
    m = score_recording(TRUTH, late, ENROLLED, duration_s=40, collar=0).with_overlap
    assert m.scored_s == pytest.approx(40)
    assert m.confusion_s == pytest.approx(0.2) and m.der == pytest.approx(0.2 / 40)
    # A segment with no decision is left out: its time is missed, not confused.
    undecided = out((0, 10, "A"), (10, 20, None), (20, 30, "unknown-1"), (30, 40, "A"))
    m = score_recording(TRUTH, undecided, ENROLLED, duration_s=40).with_overlap
    assert m.missed_s == pytest.approx(9.5) and m.confusion_s == 0
    assert m.ier == pytest.approx(9.5 / 38)


def test_overlap_scored_or_skipped() -> None:
    # B starts at 8 while A speaks until 10; the output hears only A there.
    truth = [Segment(0, 10, "A"), Segment(8, 20, "B")]
    s = score_recording(truth, out((0, 10, "A"), (10, 20, "B")), ENROLLED, duration_s=20)
    # Scored: A 0.25-7.75 and 8.25-9.75 (9 s), B 8.25-9.75 and 10.25-19.75 (11 s);
    # B is missed over 8.25-9.75.
    assert s.with_overlap.scored_s == pytest.approx(20)
    assert s.with_overlap.missed_s == pytest.approx(1.5)
    assert s.with_overlap.der == pytest.approx(1.5 / 20)
    # Skipped: the overlap 8-10 leaves, and nothing is wrong.
    assert s.without_overlap.scored_s == pytest.approx(7.5 + 9.5)
    assert s.without_overlap.der == 0


def test_strangers_map_to_unknown_labels_one_to_one() -> None:
    # Strangers X 10-20 and Y 20-30. X is split: unknown-1 over 10-17, unknown-2 over
    # 17-20; unknown-1 also holds all of Y. Scored: X 10.25-19.75, Y 20.25-29.75.
    truth = [Segment(0, 10, "A"), Segment(10, 20, "X"), Segment(20, 30, "Y")]
    output = out((0, 10, "A"), (10, 17, "unknown-1"), (17, 20, "unknown-2"),
                 (20, 30, "unknown-1"))
    m = score_recording(truth, output, ENROLLED, duration_s=30).with_overlap
    # One-to-one, most time in all: unknown-1 -> Y (9.5 s) and unknown-2 -> X (2.75 s)
    # beat unknown-1 -> X (6.75 s). X's 6.75 s under unknown-1 are wrong.
    assert m.ier_confusion_s == pytest.approx(6.75) and m.ier == pytest.approx(6.75 / 28.5)
    assert m.der == pytest.approx(6.75 / 28.5)
    # Purity: unknown-1 holds 6.75 s of X and 9.5 of Y (9.5 right), unknown-2 2.75 s of X.
    assert m.unknown_s == pytest.approx(19)
    assert m.unknown_purity == pytest.approx((9.5 + 2.75) / 19)
    # Clusters: X under 2 labels, Y under 1.
    assert (m.strangers, m.strangers_clustered, m.clusters) == (2, 2, 3)
    assert m.clusters_per_stranger == pytest.approx(1.5)
    assert m.stranger_coverage == pytest.approx((6.75 + 9.5) / 19)


def test_clusters_per_stranger_counts_labels_from_5_percent() -> None:
    # unknown-2 holds 0.3 s of X's 9.5 scored seconds (3 %): not one of X's clusters.
    output = out((0, 10, "A"), (10, 20, "B"), (20, 25, "unknown-1"), (25, 25.3, "unknown-2"),
                 (25.3, 30, "unknown-1"), (30, 40, "A"))
    m = score_recording(TRUTH, output, ENROLLED, duration_s=40).with_overlap
    assert (m.strangers_clustered, m.clusters) == (1, 1)
    assert m.ier_confusion_s == pytest.approx(0.3)
    # A stranger given an enrolled name is under no unknown label: no clusters to count.
    named = out((0, 10, "A"), (10, 20, "B"), (20, 30, "B"), (30, 40, "A"))
    m = score_recording(TRUTH, named, ENROLLED, duration_s=40).with_overlap
    assert (m.strangers, m.strangers_clustered, m.clusters_per_stranger) == (1, 0, None)
    assert m.unknown_purity is None and m.ier_confusion_s == pytest.approx(9.5)


def test_overlap_detection_precision_and_recall() -> None:
    truth = [Segment(0, 10, "A"), Segment(8, 12, "B"), Segment(20, 25, "A"),
             Segment(24, 26, "X")]  # two voices over 8-10 and 24-25: 3 s
    s = score_recording(truth, out((0, 12, "A")), ENROLLED, duration_s=30,
                        overlaps=[(8.5, 10.5), (30.0, 31.0)])
    d = s.overlap
    assert d is not None
    # Found 8.5-10.5 and 30-31 (clipped at 30: the recording's end): 2 s, 1.5 of them right.
    assert (d.truth_s, d.detected_s, d.hit_s) == pytest.approx((3, 2, 1.5))
    assert d.precision == pytest.approx(0.75) and d.recall == pytest.approx(0.5)


def test_recordings_pool_by_their_components() -> None:
    scorer = DiarizationScorer()
    swapped = out((0, 10, "B"), (10, 20, "A"), (20, 30, "unknown-3"), (30, 40, "A"))
    scorer.add(TRUTH, swapped, ENROLLED, duration_s=40, uri="one")
    short = [Segment(0, 10, "A")]
    scorer.add(short, out((0, 10, "A")), ENROLLED, duration_s=10, uri="two",
               overlaps=[(1.0, 2.0)])
    pooled = scorer.total()
    # 9.5 s confused of 38 + 9.5 scored: 20 %, not the mean of 25 % and 0 %.
    assert pooled.recordings == 2
    assert pooled.with_overlap.der == pytest.approx(9.5 / 47.5)
    assert pooled.with_overlap.ier == pytest.approx(19 / 47.5)
    assert pooled.overlap is not None and pooled.overlap.recordings == 1
    assert pooled.overlap.precision == 0 and pooled.overlap.recall is None


def test_rttm_reads_back_in_pyannote(tmp_path: Path) -> None:
    truth = [Segment(0.5, 3.25, "ls-1688"), Segment(2.9, 3.6, "alice"),
             Segment(4.0, 9.125, "unknown-2"), Segment(8.0, 8.75, "ls-1688")]
    path = tmp_path / "conv0.rttm"
    write_rttm(path, truth, "conv0")
    theirs = load_rttm(str(path))
    assert list(theirs) == ["conv0"]
    loaded = sorted((round(seg.start, 6), round(seg.end, 6), label)
                    for seg, _, label in theirs["conv0"].itertracks(yield_label=True))
    assert loaded == sorted((s.start, s.end, s.speaker) for s in read_rttm(path))
    assert loaded == sorted((s.start, s.end, s.speaker) for s in truth)
    mine = annotation(read_rttm(path), "conv0")
    uem = Timeline([mine.get_timeline().extent()])
    assert DiarizationErrorRate()(theirs["conv0"], mine, uem=uem) == 0
    assert mine.get_overlap() == theirs["conv0"].get_overlap()


def test_streaming_turns_become_segments() -> None:
    """The segments evaluate scores (identify --live's, and the daemon's replay --rttm)."""
    def turn(a: float, b: float, speaker: str | None, unknown: str | None,
             final: bool = True) -> TurnUpdate:
        return TurnUpdate(round(a * 16000), round(b * 16000), 1, speaker, unknown, 0.3, 0.9,
                          [], final, 3)

    results = [turn(0, 1, "A", None, final=False), turn(0, 2, "A", None),
               SpeechEnded(32000, 32000), turn(3, 4, None, "unknown-1"), turn(5, 6, None, None)]
    segs = live_segments(results)
    assert [(s.start, s.end, s.speaker, s.enrolled) for s in segs] == [
        (0, 2, "A", True), (3, 4, "unknown-1", False), (5, 6, None, False)]


def test_evaluate_lines(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    results = [TurnUpdate(0, 160000, 1, "A", None, 0.6, 0.9, [], True, 20),
               TurnUpdate(160000, 320000, 2, "A", None, 0.6, 0.9, [], True, 20),
               TurnUpdate(320000, 480000, 3, None, "unknown-1", 0.1, 0.9, [], True, 20),
               TurnUpdate(480000, 640000, 4, "A", None, 0.6, 0.9, [], True, 20)]
    score = evaluate.diarization_score(TRUTH, live_segments(results), ["A", "B"], 40.0, 0.25)
    assert score is not None and score.with_overlap.confusion_s == pytest.approx(9.5)
    text = evaluate.diarization_summary(score)
    assert re.search(r"collar 0.25 s each side: DER 25\.00% \(missed 0\.00%, false alarm "
                     r"0\.00%, confusion 25\.00%\) of 38\.0 s, JER [\d.]+%, identification "
                     r"error rate with names 25\.00%", text), text
    assert "overlapped speech skipped: DER 25.00%" in text
    assert "purity 100.00% of 9.5 s; 1.00 clusters per stranger (1 of 1 strangers" in text
    # Without the eval extra: one line says so, and there is nothing to print.
    monkeypatch.delitem(sys.modules, "vggvox.eval.diarization")
    monkeypatch.setitem(sys.modules, "pyannote.core", None)
    assert evaluate.diarization_score(TRUTH, live_segments(results), ["A", "B"], 40.0,
                                      0.25) is None
    err = capsys.readouterr().err
    assert err == evaluate.NO_PYANNOTE + "\n"
