"""The room estimator (vggvox.rooms) and the adapted rule (AcceptRule.shift), in-process."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from vggvox.calibration import AcceptRule, Calibration
from vggvox.rooms import MIN_SCORES, Evidence, Room, clip_evidence, fit_shift

ROOT = Path(__file__).resolve().parent.parent
CAL = Calibration.load(ROOT / "weights/vggvox_weights/campplus-int8.calibration.yaml")
sys.path.insert(0, str(ROOT / "bench"))


def hist(z: np.ndarray) -> np.ndarray:
    ev = Evidence()
    ev.add(z, 1.0)
    return ev.counts


@pytest.mark.parametrize(("n", "mean", "sd"), [(18, 2.3, 0.6), (200, 0.4, 0.7), (5000, 1.0, 1.0)])
def test_fit_shift_is_the_studied_estimator(n: int, mean: float, sd: float) -> None:
    """The histogram's fit agrees with bench/rooms_study.py's exact one (the measured
    choice: top 20%, n0 10, min 10, shift only) within the histogram's resolution."""
    from rooms_study import fit_tail_adjust

    z = np.random.default_rng(n).normal(mean, sd, n)
    exact = max(0.0, fit_tail_adjust(z, 10, 0.2, 10).mu)
    assert fit_shift(hist(z)) == pytest.approx(exact, abs=0.03)


def test_fit_shift_needs_evidence_and_never_loosens() -> None:
    assert fit_shift(hist(np.full(MIN_SCORES - 1, 3.0))) == 0.0
    assert fit_shift(hist(np.full(MIN_SCORES, 3.0))) > 0.0
    assert fit_shift(hist(np.random.default_rng(1).normal(-2.0, 1.0, 500))) == 0.0


def test_evidence_round_trip_and_refusal() -> None:
    ev = Evidence()
    ev.add(np.array([0.1, 0.1, 9.0, -9.0]), 2.5)
    back = Evidence.from_dict(ev.as_dict())
    assert np.array_equal(back.counts, ev.counts) and back.items == 1 and back.speech_s == 2.5
    for bad in ({}, {"bins": [[999, 1]], "speech_s": 0, "items": 0},
                {"bins": [[1, -1]], "speech_s": 0, "items": 0}, {"bins": "x"}):
        with pytest.raises(ValueError, match="not a room's evidence"):
            Evidence.from_dict(bad)


def test_shift_raises_the_cutoff_and_the_confidence_agrees() -> None:
    base = AcceptRule(0.005, None, CAL)
    moved = AcceptRule(0.005, None, CAL, shift=1.2)
    for secs, n in ((1.0, 2), (4.0, 10), (20.0, 300)):
        cut, cut2 = base.cutoff(secs, n), moved.cutoff(secs, n)
        assert cut2 == pytest.approx(cut + 1.2 * CAL.sd(secs))
        # The adapted rule is as sure at its cutoff as the shipped one at its own.
        assert moved.confidence(cut2, secs, n) == pytest.approx(base.confidence(cut, secs, n))
        assert moved.judge(cut2 + 1e-6, secs, n)[0] and not moved.judge(cut2 - 1e-6, secs, n)[0]
    assert "raised 1.20 sd" in moved.describe()
    assert AcceptRule(0.005, None, CAL, shift=0.0) == base


def test_room_moves_with_evidence_resets_and_stays_off_when_asked() -> None:
    base = AcceptRule(0.005, None, CAL)
    room = Room("mic", base)
    assert room.rule is base
    high = np.full(40, 0.6)  # cosines far above the shipped stranger tail at 3 s
    room.heard(high, 3.0)
    assert room.rule.shift > 1.0 and room.rule.cutoff(3.0, 5) > base.cutoff(3.0, 5)
    summary = room.summary()
    assert summary["heard_scores"] == 40 and summary["heard_turns"] == 1
    room.reset()
    assert room.rule.shift == 0.0 and room.summary()["scores"] == 0
    fixed = Room("mic", base, adapt=False)
    fixed.heard(high, 3.0)
    assert fixed.rule is base and not fixed.adapts
    raw = Room("mic", AcceptRule(threshold=0.5))
    assert not raw.adapts


def test_clip_evidence_leaves_out_the_speaker_itself() -> None:
    names = ["a", "b", "c"]
    cosines = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.25]])
    ev = clip_evidence(CAL, names, cosines, [("a", 2.0), ("b", 4.0)])
    assert ev.scores == 4 and ev.items == 2 and ev.speech_s == 6.0
    expect = np.sort(np.concatenate([CAL.z(np.array([0.2, 0.1]), 2.0),
                                     CAL.z(np.array([0.3, 0.25]), 4.0)]))
    assert math.isclose(float(expect[-1]), CAL.z(0.3, 4.0))
    assert np.array_equal(ev.counts, hist(expect))


def test_the_store_keeps_a_room_per_source_model_and_calibration(tmp_path: Path) -> None:
    from vggvox import roomstore
    from vggvox.store import VoiceprintStore

    store = VoiceprintStore(tmp_path / "v.db")
    gen = store.generation()
    ev = Evidence()
    ev.add(np.array([1.0, 2.0, 3.0]), 4.0)
    roomstore.save(store, "kitchen", "sha-a", CAL, ev.as_dict(), 7)
    assert store.generation() == gen  # the voiceprints did not change
    kept = roomstore.load(store, "kitchen", "sha-a", CAL)
    assert kept is not None and np.array_equal(kept[0].counts, ev.counts) and kept[1] == 7
    assert roomstore.load(store, "hall", "sha-a", CAL) is None
    # Another calibration, or another model: that room starts afresh, and the row goes.
    other = Calibration(**{**CAL.__dict__, "nontarget_mean": (0.1, 0.0), "path": None})
    assert roomstore.load(store, "kitchen", "sha-a", other) is None
    assert roomstore.load(store, "kitchen", "sha-a", CAL) is None
    roomstore.save(store, "kitchen", "sha-a", CAL, ev.as_dict(), 0)
    assert roomstore.load(store, "kitchen", "sha-b", CAL) is None
    assert roomstore.load(store, "kitchen", "sha-a", CAL) is None


def test_channel_clips_are_those_declared_on_the_source(tmp_path: Path) -> None:
    from vggvox import roomstore
    from vggvox.store import VoiceprintStore

    store = VoiceprintStore(tmp_path / "v.db")
    v = np.eye(4, dtype=np.float32)
    store.enroll("ann", v[:3], "m@1", ["kitchen:live", "kitchen2:clip0", "clip1"], [3, 4, 5])
    store.enroll("bob", v[3:], "m@1", ["kitchen:unknown-2"], [6])
    got = roomstore.channel_clips(store, "kitchen", 4)
    assert [(s, secs) for s, secs, _ in got] == [("ann", 3.0), ("bob", 6.0)]
    assert roomstore.channel_clips(store, "kitchen", 4, after=roomstore.last_clip(store)) == []
    assert roomstore.channel_clips(store, "kitchen", 8) == []  # another model's size


def test_a_room_is_bounded() -> None:
    """A turn adds at most MAX_OTHERS scores, and a room is two fixed histograms."""
    from vggvox.rooms import BINS, MAX_OTHERS

    room = Room("mic", AcceptRule(0.005, None, CAL))
    for _ in range(3):
        room.heard(np.full(5 * MAX_OTHERS, 0.6), 3.0)
    assert room.summary()["heard_scores"] == 3 * MAX_OTHERS
    assert len(room.state()[1]["bins"]) <= BINS


def test_a_room_raises_the_change_threshold_too() -> None:
    """Two windows at cosine 0.55 to the turn are the same voice by the card's 0.47, and
    another voice in a room whose strangers score 1.2 sd higher (0.47 + 1.2 sd(2 s))."""
    from vggvox.stream.decider import TurnConfig, TurnDecider
    from vggvox.stream.identify import OpenSetIdentifier
    from vggvox.stream.segmenter import Window
    from vggvox.stream.vad import SpeechStart
    from vggvox.voiceprints import VoiceprintSet

    moved = AcceptRule(0.005, None, CAL, shift=1.2)
    assert moved.raised(0.47, 2.0) == pytest.approx(0.47 + 1.2 * CAL.sd(2.0))
    assert AcceptRule(0.005, None, CAL).raised(0.47, 2.0) == 0.47
    a, b = np.eye(192, dtype=np.float32)[:2]
    near = (0.55 * a + math.sqrt(1 - 0.55**2) * b).astype(np.float32)

    def turns(room: Room | None) -> int:
        prints = VoiceprintSet(192)
        prints.add("x", np.eye(192, dtype=np.float32)[5:6])
        rule = room.rule if room is not None else AcceptRule(0.005, None, CAL)
        decider = TurnDecider(OpenSetIdentifier(prints, rule), TurnConfig(), 0.47, 192,
                              room=room)
        decider.speech_start(SpeechStart(0))
        for i, e in enumerate([a, a, a, near, near]):
            decider.window(Window(i * 8000, i * 8000 + 32000, np.zeros(32000, np.int16)), e)
        return decider.turns

    room = Room("mic", AcceptRule(0.005, None, CAL))
    room.heard(np.full(40, 0.62), 2.0)
    assert room.rule.shift > 1.0
    assert turns(None) == 1 and turns(room) == 2
