"""Scoring of speaker timelines against RTTM truth, on hand-made segments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vggvox.errors import ListFormatError, VggvoxError
from vggvox.eval import (
    Decision,
    Labelled,
    Segment,
    combine,
    plot_timelines,
    read_rttm,
    score_conversation,
    true_turns,
    write_rttm,
)

# A (enrolled) 0-10, B (enrolled) 10-20, X (stranger) 20-30, A 30-40: three changes.
TRUTH = [Segment(0, 10, "A"), Segment(10, 20, "B"), Segment(20, 30, "X"), Segment(30, 40, "A")]
ENROLLED = {"A", "B"}


def perfect() -> tuple[list[Labelled], list[Decision]]:
    turns = [Labelled(s.start, s.end, None if s.speaker == "X" else s.speaker) for s in TRUTH]
    return turns, [Decision(t.end, t.start, t.end, t.label) for t in turns]


def test_perfect_output() -> None:
    turns, decisions = perfect()
    s = score_conversation(TRUTH, ENROLLED, turns, decisions)
    assert s.ier == 0
    assert s.flicker == 1.0
    assert s.turn_accuracy == 1.0
    assert s.stranger_fa_rate == 0
    assert s.speech_s == pytest.approx(40)
    # 0.25 s off both ends and each side of the three inner boundaries.
    assert s.scored_s == pytest.approx(40 - 0.25 - 0.25 - 3 * 0.5)
    assert s.n_turns == 4 and s.true_changes == 3
    # Decisions come at each turn's end, 10 s after each change.
    assert s.delays == pytest.approx((10, 10, 10))
    assert s.missed_changes == 0
    assert s.delay_median == pytest.approx(10) and s.delay_p90 == pytest.approx(10)


def test_known_wrong_span_gives_exact_ier() -> None:
    truth = [Segment(0, 10, "A"), Segment(10, 20, "B")]
    turns = [Labelled(0, 12, "A"), Labelled(12, 20, "B")]
    s = score_conversation(truth, ENROLLED, turns, [])
    assert s.scored_s == pytest.approx(19.0)
    # Wrong from the end of the collar (10.25) to 12.
    assert s.error_s == pytest.approx(1.75)
    assert s.confusion_s == pytest.approx(1.75) and s.missed_s == 0
    assert s.ier == pytest.approx(1.75 / 19.0)


def test_missed_time_is_output_none() -> None:
    truth = [Segment(0, 10, "A")]
    turns = [Labelled(0, 3, "A"), Labelled(4, 10, "A")]
    s = score_conversation(truth, ENROLLED, turns, [])
    assert s.missed_s == pytest.approx(1.0) and s.confusion_s == 0
    assert s.ier == pytest.approx(1.0 / 9.5)
    assert s.output_changes == 0  # A, gap, A is no change


def test_collar_hides_small_boundary_errors() -> None:
    truth = [Segment(0, 10, "A"), Segment(10, 20, "B")]
    turns = [Labelled(0, 10.2, "A"), Labelled(10.2, 20, "B")]
    assert score_conversation(truth, ENROLLED, turns, []).ier == 0
    s = score_conversation(truth, ENROLLED, turns, [], collar=0.0)
    assert s.scored_s == pytest.approx(20.0)
    assert s.error_s == pytest.approx(0.2)


def test_overlapping_truth_is_not_scored() -> None:
    truth = [Segment(0, 10, "A"), Segment(8, 20, "B")]
    turns = [Labelled(0, 20, "A")]
    s = score_conversation(truth, ENROLLED, turns, [], collar=0.0)
    assert s.speech_s == pytest.approx(20)
    assert s.scored_s == pytest.approx(18)
    assert s.error_s == pytest.approx(10)  # B alone, 10-20


def test_stranger_false_accept() -> None:
    truth = [Segment(0, 10, "A"), Segment(10, 20, "X")]
    turns = [Labelled(0, 15, "A"), Labelled(15, 20, None)]
    s = score_conversation(truth, {"A"}, turns, [])
    assert s.stranger_s == pytest.approx(9.5)
    assert s.stranger_fa_s == pytest.approx(4.75)
    assert s.stranger_fa_rate == pytest.approx(0.5)
    # No strangers: no rate rather than a zero.
    assert score_conversation(truth[:1], {"A"}, turns[:1], []).stranger_fa_rate is None


def test_strangers_are_unknown_and_merge_into_one_true_turn() -> None:
    truth = [Segment(0, 5, "A"), Segment(5, 10, "X"), Segment(10, 15, "Y")]
    turns = true_turns(truth, {"A"})
    assert [(t.label, t.start, t.end) for t in turns] == [("A", 0, 5), ("unknown", 5, 15)]
    out = [Labelled(0, 5, "A"), Labelled(5, 15, None)]
    s = score_conversation(truth, {"A"}, out, [])
    assert s.ier == 0 and s.true_changes == 1 and s.flicker == 1.0


def test_delay_and_missed_change() -> None:
    turns, _ = perfect()
    decisions = [
        Decision(2.0, 0, 2, "A"),
        Decision(9.9, 8, 11, "B"),    # decided before the change: no credit
        Decision(11.5, 9.5, 11.5, "B"),  # first right one after the change at 10
        Decision(12.0, 10, 12, "B"),
        Decision(21.0, 19, 21, "A"),   # wrong label for the change into the stranger
        Decision(22.5, 20.5, 22.5, None),  # None matches the stranger's "unknown"
        Decision(35.0, 25, 29, "A"),   # A, but outside A's turn 30-40: missed
    ]
    s = score_conversation(TRUTH, ENROLLED, turns, decisions)
    assert s.delays == pytest.approx((1.5, 2.5))
    assert s.missed_changes == 1
    assert s.delay_median == pytest.approx(2.0)
    assert s.delay_p90 == pytest.approx(1.5 + 0.9 * 1.0)


def test_flicker_counts_output_label_changes() -> None:
    truth = [Segment(0, 10, "A"), Segment(10, 20, "B")]
    turns = [Labelled(0, 4, "A"), Labelled(4, 5, "B"), Labelled(5, 10, "A"),
             Labelled(10.5, 20, "B")]  # A B A (gap) B: three changes for one
    s = score_conversation(truth, ENROLLED, turns, [])
    assert s.output_changes == 3 and s.flicker == 3.0
    assert score_conversation(truth[:1], ENROLLED, turns[:1], []).flicker is None


def test_turn_accuracy_takes_the_majority_label() -> None:
    truth = [Segment(0, 10, "A"), Segment(10, 20, "B"), Segment(20, 21, "A")]
    turns = [Labelled(0, 6, "B"), Labelled(6, 10, "A"),  # A mostly labelled B: wrong
             Labelled(10, 20, "B"), Labelled(20, 21, "A")]  # a short turn: 0.5 s scored
    s = score_conversation(truth, ENROLLED, turns, [])
    assert (s.n_turns, s.n_turns_right) == (3, 2)
    assert s.turn_accuracy == pytest.approx(2 / 3)


def test_combine_weights_by_time_and_pools_delays() -> None:
    turns, decisions = perfect()
    a = score_conversation(TRUTH, ENROLLED, turns, decisions)
    truth = [Segment(0, 10, "A"), Segment(10, 20, "B")]
    b = score_conversation(truth, ENROLLED, [Labelled(0, 12, "A"), Labelled(12, 20, "B")],
                           [Decision(13, 11, 13, "B")])
    c = combine([a, b])
    assert c.n_conversations == 2
    assert c.scored_s == pytest.approx(a.scored_s + b.scored_s)
    assert c.ier == pytest.approx(1.75 / (38.0 + 19.0))
    assert sorted(c.delays) == pytest.approx([3, 10, 10, 10])
    assert c.true_changes == 4 and c.output_changes == 4 and c.flicker == 1.0
    assert c.n_turns == 6 and c.turn_accuracy == pytest.approx(1.0)
    d = c.as_dict()
    json.dumps(d)
    assert d["ier"] == c.ier and d["delay_median"] == pytest.approx(10)
    with pytest.raises(ValueError):
        combine([])


def test_plot_timelines_writes_a_png(tmp_path: Path) -> None:
    turns, _ = perfect()
    turns[1] = Labelled(10, 20, "A")
    path = tmp_path / "timeline.png"
    plot_timelines(TRUTH, turns, path, "hand-made", enrolled=ENROLLED)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_rttm_fixture(fixtures_dir: Path) -> None:
    segs = read_rttm(fixtures_dir / "stream_2spk.rttm")
    assert [s.speaker for s in segs] == ["ls-3005", "ls-3331", "ls-3005", "ls-3331"]
    assert segs[1] == Segment(5.5, 10.5, "ls-3331")
    assert segs[-1].duration == pytest.approx(2.115)


def test_rttm_round_trip_skips_comments_and_other_types(tmp_path: Path) -> None:
    segs = [Segment(3.25, 4.0, "b"), Segment(0.0, 1.5, "a")]
    path = tmp_path / "x.rttm"
    write_rttm(path, segs, "x")
    assert read_rttm(path) == sorted(segs, key=lambda s: s.start)
    text = ";; a comment\n\nSPKR-INFO x 1 <NA> <NA> <NA> unknown a <NA> <NA>\n"
    path.write_text(text + path.read_text())
    assert read_rttm(path) == [Segment(0.0, 1.5, "a"), Segment(3.25, 4.0, "b")]
    assert read_rttm(path, file_id="other") == []


@pytest.mark.parametrize("line, reason", [
    ("SPEAKER x 1 0.0 1.0 <NA> <NA> a", "expected 10 fields"),
    ("SPEAKER x 1 zero 1.0 <NA> <NA> a <NA> <NA>", "numbers"),
    ("SPEAKER x 1 0.0 -1 <NA> <NA> a <NA> <NA>", ">= 0"),
    ("SPEAKER x 1 0.0 1.0 <NA> <NA> <NA> <NA> <NA>", "speaker name"),
    ("SPEEKER x 1 0.0 1.0 <NA> <NA> a <NA> <NA>", "record type"),
])
def test_malformed_rttm_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.rttm"
    path.write_text("SPEAKER x 1 0.0 1.0 <NA> <NA> a <NA> <NA>\n\n" + line + "\n")
    with pytest.raises(ListFormatError, match=reason) as e:
        read_rttm(path)
    assert (e.value.path, e.value.line_no, e.value.text) == (str(path), 3, line)


def test_missing_rttm_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(VggvoxError, match="nope.rttm"):
        read_rttm(tmp_path / "nope.rttm")
