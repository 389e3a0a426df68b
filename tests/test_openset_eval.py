"""Open-set evaluation: strangers accepted against enrolled speakers not named right.

The metric functions on numbers worked out by hand, then ``offline --open-set``
and ``evaluate`` end to end on real speech.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vggvox.errors import VggvoxError
from vggvox.eval.metrics import (
    det_eer,
    det_min_total,
    eer,
    open_set_curve,
    open_set_det,
    open_set_point,
    open_set_trade_off,
    plot_det,
)
from vggvox.eval.openset import ScoredTurn, accept_rule, conversation_open_set, final_turns
from vggvox.eval.timeline import Labelled, score_conversation
from vggvox.modelcard import load_card, resolve_card
from vggvox.recording.rttm import Segment
from vggvox.scoring import Match
from vggvox.stream.results import TurnUpdate
from vggvox_client.cli import main

# Four enrolled speakers' tests (three with the right best speaker, scores 0.9, 0.8,
# 0.3; one with a wrong one at 0.7) and two strangers' (0.6, 0.2).
BEST = np.array([0.9, 0.8, 0.3, 0.7, 0.6, 0.2])
RIGHT = np.array([True, True, True, False, False, False])
ENROLLED = np.array([True, True, True, True, False, False])


def test_open_set_det_by_hand() -> None:
    d = open_set_det(BEST, RIGHT, ENROLLED)
    np.testing.assert_allclose(d.thresholds, [0.2, 0.3, 0.6, 0.7, 0.8, 0.9, np.inf])
    # Strangers accepted: both, then the one at 0.6, then none.
    np.testing.assert_allclose(d.p_fa, [1, 0.5, 0.5, 0, 0, 0, 0])
    # Enrolled not named right: the wrong one always, then each right one rejected.
    np.testing.assert_allclose(d.p_miss, [0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 1])
    # The rates meet at 0.5 (threshold 0.6); the lowest total is 0.5 at 0.7.
    assert det_eer(d) == pytest.approx((0.5, 0.6))
    assert det_min_total(d) == pytest.approx((0.5, 0.7))
    figures = open_set_trade_off(d)
    assert figures["open_set_eer"] == pytest.approx(0.5)
    assert figures["open_set_min_total_threshold"] == pytest.approx(0.7)


def test_open_set_det_needs_both_kinds() -> None:
    with pytest.raises(ValueError, match="both"):
        open_set_det(BEST[:4], RIGHT[:4], ENROLLED[:4])


def test_weighted_curve_equals_repeated_items() -> None:
    # A weight of 2 is the same as the item twice.
    d = open_set_curve(np.array([0.5, 0.4, 0.9]), np.array([0, 2.0, 0]),
                       np.array([1.0, 0, 2.0]), 2.0, 4.0)
    twice = open_set_det(np.array([0.5, 0.4, 0.4, 0.9, 0.9, 0.1]),
                         np.array([True, False, False, True, True, False]),
                         np.array([True, False, False, True, True, True]))
    # The unnamed enrolled test (0.1, wrong) only lowers the ceiling, as total 4 does.
    np.testing.assert_allclose(d.p_fa, twice.p_fa[1:])
    np.testing.assert_allclose(d.p_miss, twice.p_miss[1:])


def test_closed_set_eer_unchanged_by_the_refactor() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.1, 0.75])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert eer(scores, labels)[0] == pytest.approx(0.25)


def test_open_set_point_by_hand() -> None:
    p = open_set_point(BEST, RIGHT, ENROLLED, 0.5)
    assert (p.n_strangers, p.strangers_accepted) == (2, 1)
    assert (p.n_enrolled, p.enrolled_right, p.enrolled_wrong, p.enrolled_missed) == (4, 2, 1, 1)
    assert p.false_accept_rate == 0.5
    d = p.as_dict()
    assert d["enrolled_right_rate"] == 0.5 and d["enrolled_missed_rate"] == 0.25
    # Per-item cutoffs (they depend on each utterance's length).
    p = open_set_point(BEST, RIGHT, ENROLLED, np.array([1, 1, 0.1, 1, 1, 0.1]))
    assert (p.strangers_accepted, p.enrolled_right, p.enrolled_missed) == (1, 1, 3)


def test_plot_open_set_det(tmp_path: Path) -> None:
    png = tmp_path / "det.png"
    plot_det(open_set_det(BEST, RIGHT, ENROLLED), png, "open set", 0.5,
             xlabel="strangers accepted (%)", ylabel="enrolled not named right (%)",
             point=(0.5, 0.5, "operating point"))
    assert png.read_bytes()[:4] == b"\x89PNG"


# A (enrolled) 0-10, B (enrolled) 10-20, X (stranger) 20-30, A 30-40.
TRUTH = [Segment(0, 10, "A"), Segment(10, 20, "B"), Segment(20, 30, "X"), Segment(30, 40, "A")]
TURNS = [
    ScoredTurn(0, 10, "A", "A", 0.8),
    ScoredTurn(10, 20, None, "B", 0.4),  # B missed: below the cutoff
    ScoredTurn(20, 30, "A", "A", 0.5),  # the stranger taken for A
    ScoredTurn(30, 40, "A", "A", 0.9),
]


def test_conversation_operating_point_and_curve() -> None:
    o = conversation_open_set(TRUTH, {"A", "B"}, TURNS)
    # Each segment keeps 9.5 s once the 0.25 s collars are off.
    assert o.stranger_s == pytest.approx(9.5) and o.enrolled_s == pytest.approx(28.5)
    assert o.stranger_fa_rate == pytest.approx(1.0)
    assert o.enrolled_miss_rate == pytest.approx(1 / 3)
    assert o.enrolled_unknown_s == pytest.approx(9.5) and o.enrolled_wrong_s == 0
    # The same stranger figure as the timeline scoring.
    labelled = [Labelled(t.start, t.end, t.label) for t in TURNS]
    assert score_conversation(TRUTH, {"A", "B"}, labelled, []).stranger_fa_rate == \
        pytest.approx(o.stranger_fa_rate)
    assert o.det is not None
    np.testing.assert_allclose(o.det.thresholds, [0.4, 0.5, 0.8, 0.9, np.inf])
    np.testing.assert_allclose(o.det.p_fa, [1, 1, 0, 0, 0])
    np.testing.assert_allclose(o.det.p_miss, [0, 1 / 3, 1 / 3, 2 / 3, 1])
    # Between 0.5 and 0.8 the stranger goes and the miss stays at 1/3.
    assert det_eer(o.det) == pytest.approx((1 / 3, 0.7))
    d = o.as_dict()
    assert d["open_set_min_total"] == pytest.approx(1 / 3)
    assert d["open_set_min_total_threshold"] == pytest.approx(0.8)


def test_conversation_uncovered_and_wrong_time() -> None:
    turns = [ScoredTurn(0, 5, "B", "B", 0.6), ScoredTurn(10, 20, "B", "B", 0.7)]
    o = conversation_open_set(TRUTH[:2], {"A", "B"}, turns)
    assert o.enrolled_wrong_s == pytest.approx(4.75)  # 0.25-5 named B
    assert o.enrolled_none_s == pytest.approx(4.75)  # 5-9.75: no turn
    assert o.enrolled_miss_rate == pytest.approx(0.5)
    assert o.det is None and "open_set_eer" not in o.as_dict()  # no stranger


def test_final_turns_take_the_best_match() -> None:
    def update(final: bool, top: list[Match]) -> TurnUpdate:
        return TurnUpdate(0, 32000, 1, None, None, 0.1, 0.9, top, final, 3)

    turns = final_turns([update(False, [Match("A", 0.9)]),
                         update(True, [Match("A", 0.3), Match("B", 0.1)]), update(True, [])])
    assert turns[0] == ScoredTurn(0.0, 2.0, None, "A", 0.3)
    assert turns[1].best is None and turns[1].score == -np.inf


def test_accept_rule_from_options() -> None:
    card = load_card(resolve_card("campplus"))
    assert accept_rule(card, threshold=0.3).cutoff(1.0, 10) == 0.3
    rule = accept_rule(card, false_accept=0.001)
    if card.calibration is not None:
        # Fewer false accepts allowed, and more speakers to match: a higher cutoff.
        assert rule.cutoff(2.0, 100) > accept_rule(card, false_accept=0.05).cutoff(2.0, 100)
        assert rule.cutoff(2.0, 100) > rule.cutoff(2.0, 2)
    no_cal = accept_rule(type(card)(**{**card.__dict__, "calibration": None}), "euclidean")
    # The card's cosine threshold, in euclidean units: -|a - b| of unit vectors.
    assert no_cal.cutoff(2.0, 5) == pytest.approx(-np.sqrt(2 - 2 * card.threshold))
    with pytest.raises(VggvoxError, match="--false-accept"):
        accept_rule(card, false_accept=1.5)


# -- end to end ----------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


@pytest.fixture
def half_enrolled(tmp_path: Path, speech_dir: Path) -> tuple[Path, Path, set[str]]:
    """Eight LibriSpeech test-other speakers, the first four enrolled; all eight tested."""
    lines = (speech_dir / "enroll_list.csv").read_text().splitlines()
    speakers = list(dict.fromkeys(ln.split()[1] for ln in lines
                                  if ln.startswith("librispeech-test-other/")))[:8]
    enrolled = set(speakers[:4])
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("".join(f"{speech_dir / ln.split()[0]} {ln.split()[1]}\n" for ln in lines
                              if ln.split()[1] in enrolled))
    tests = [ln.split() for ln in (speech_dir / "test_list.csv").read_text().splitlines()]
    test = tmp_path / "test.txt"
    # Three tests each keep the run short.
    chosen = [[t for t in tests if t[1] == s][:3] for s in speakers]
    test.write_text("".join(f"{speech_dir / p} {s}\n" for group in chosen for p, s in group))
    return enroll, test, enrolled


@pytest.mark.timeout(120)
def test_offline_open_set_scores_strangers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
    half_enrolled: tuple[Path, Path, set[str]],
) -> None:
    enroll, test, enrolled = half_enrolled
    out, det, cache = tmp_path / "r.csv", tmp_path / "det.png", tmp_path / "cache"
    base = ["--enroll-list", str(enroll), "--test-list", str(test), "--cache", str(cache)]
    code, s, _ = run(capsys, "offline", *base, "--out", str(out), "--open-set", "--det",
                     str(det), "--json")
    assert code == 0 and s["n_speakers"] == 4 and s["n_scored"] == 24 and s["n_skipped"] == 0
    # The strangers are impostors, not skipped.
    assert s["n_strangers"] == 12 and s["n_enrolled_tests"] == 12
    assert s["enrolled_right"] + s["enrolled_wrong"] + s["enrolled_missed"] == 12
    assert s["false_accept_rate"] == s["strangers_accepted"] / 12
    assert s["false_accept_rate"] <= 1 / 12 and s["enrolled_right"] >= 10
    # Without --false-accept, the daemon's default rate.
    assert 0 <= s["open_set_eer"] <= 0.1 and s["false_accept_setting"] == 0.005
    assert s["top1"] >= 0.9  # closed-set figures over the enrolled speakers' tests
    assert det.read_bytes()[:4] == b"\x89PNG"
    with out.open() as f:
        rows = list(csv.DictReader(f))  # pure CSV: the figures go to stdout or --json
    assert len(rows) == 24
    for r in rows:
        if r["speaker"] in enrolled:
            assert r["rank"] != ""
        else:
            assert r["rank"] == "" and r["decision"] in ("unknown", *enrolled)
        assert r["decision"] in ("unknown", r["top1"]) and r["confidence"] != ""
    assert not any(line.startswith("#") for line in out.read_text().splitlines())

    # A raw threshold above every score names nobody (cached embeddings: fast).
    code = main(["batch-offline", *base, "--out", str(out), "--open-set", "--threshold", "1.01",
                 "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 0 and "open set, raw threshold 1.01" in printed
    assert "strangers accepted 0.00% (0 of 12 stranger test utterances)" in printed
    assert "best trade-off" in printed
    assert "missed 100.00% (12)" in printed

    # Closed set as before: the strangers' tests are skipped.
    code, s3, _ = run(capsys, "offline", *base, "--out", str(out), "--json")
    assert code == 0 and s3["n_scored"] == 12 and s3["n_skipped"] == 12
    assert "n_strangers" not in s3 and "decision" not in out.read_text().splitlines()[0]


def test_offline_open_set_prints_its_figures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path
) -> None:
    enroll = tmp_path / "e.txt"
    enroll.write_text(f"{fixtures_dir}/ls-3005__3005-163389-0000.wav ls-3005\n"
                      f"{fixtures_dir}/vctk-p225__p225_003.wav vctk-p225\n")
    test = tmp_path / "t.txt"
    test.write_text("".join(f"{p} {p.name.split('__')[0]}\n"
                            for p in sorted(fixtures_dir.glob("*__*.wav"))))
    code = main(["offline", "--enroll-list", str(enroll), "--test-list", str(test), "--out",
                 str(tmp_path / "r.csv"), "--open-set", "--false-accept", "0.001"])
    out = capsys.readouterr().out
    assert code == 0
    assert "calibrated to accept 0.1% of strangers" in out or "no calibration" in out
    assert "strangers accepted 0.00% (0 of 6 stranger test utterances)" in out
    assert "enrolled speakers: right" in out and "best trade-off of one raw threshold" in out


def test_open_set_options_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lst = tmp_path / "l.csv"
    lst.write_text("a.wav a\n")
    base = ["offline", "--enroll-list", str(lst), "--test-list", str(lst), "--out",
            str(tmp_path / "r.csv")]
    for extra, message in ((["--open-set", "--false-accept", "1.5"],
                            "--false-accept must be 1e-06..0.5"),
                           (["--det", "x.png"], "need --open-set")):
        code = main([*base, *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_evaluate_open_set(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                           fixtures_dir: Path) -> None:
    # Only ls-3005 enrolled: ls-3331's turns of the conversation are a stranger's.
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("".join(f"{fixtures_dir}/ls-3005__3005-163389-000{i}.wav ls-3005\n"
                              for i in (0, 1)))
    det = tmp_path / "det.png"
    argv = ["evaluate", str(fixtures_dir / "stream_2spk.wav"), "--rttm",
            str(fixtures_dir / "stream_2spk.rttm"), "--enroll-list", str(enroll)]
    code, out, _ = run(capsys, *argv, "--det", str(det), "--json")
    o = out["open_set"]
    assert code == 0 and o["stranger_s"] > 4 and o["enrolled_s"] > 4
    assert o["stranger_fa_rate"] == pytest.approx(out["stranger_fa_rate"])
    assert o["stranger_fa_rate"] == 0 and o["enrolled_miss_rate"] < 0.2
    assert 0 <= o["open_set_eer"] < 0.2 and det.read_bytes()[:4] == b"\x89PNG"
    # A raw threshold below every score names the stranger too.
    code, out, _ = run(capsys, *argv, "--threshold", "-1", "--json")
    assert code == 0 and out["threshold_setting"] == -1 and out["stranger_fa_rate"] == 1
    code, _, err = run(capsys, *argv, "--false-accept", "0")
    assert code == 2 and "--false-accept" in err and len(err.strip().splitlines()) == 1
    code = main(argv)
    assert "open set" in capsys.readouterr().out
