"""Calibrated open-set decisions and unknown-voice clusters: units, then real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from speakers_fixture import joined, labels_within, vctk

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.calibration import AcceptRule, Calibration, from_cosine, to_cosine
from vggvox.embedder import Embedder, l2_normalize
from vggvox.enrollment import enroll
from vggvox.errors import ModelError
from vggvox.eval.engine import recognize
from vggvox.modelcard import load_card, resolve_card
from vggvox.stream.recognizer import Recognizer, RecognizerConfig, ScoringConfig
from vggvox.stream.results import TurnUpdate
from vggvox.stream.unknowns import UnknownClusters, UnknownConfig
from vggvox.voiceprints import VoiceprintSet


@pytest.fixture(scope="module")
def cal() -> Calibration:
    c = load_card(resolve_card("campplus")).calibration
    assert c is not None, "the shipped CAM++ card names its calibration"
    return c


# ---------------------------------------------------------------- calibration


def test_the_threshold_rises_with_the_number_enrolled_and_falls_with_the_rate(
        cal: Calibration) -> None:
    for d in (1.0, 2.0, 8.0):
        by_n = [cal.threshold(0.01, d, n) for n in (1, 10, 100, 1000)]
        assert by_n == sorted(by_n) and by_n[0] < by_n[-1]
        by_rate = [cal.threshold(a, d, 20) for a in (0.001, 0.01, 0.05)]
        assert by_rate == sorted(by_rate, reverse=True)


def test_false_accept_is_the_inverse_of_threshold(cal: Calibration) -> None:
    for a in (0.001, 0.01, 0.05):
        for n in (1, 7, 150):
            t = cal.threshold(a, 2.5, n)
            assert cal.false_accept(t, 2.5, n) == pytest.approx(a, rel=1e-6)


def test_confidence_is_a_probability_that_grows_with_the_score(cal: Calibration) -> None:
    ps = [cal.confidence(s, 3.0, 20) for s in np.linspace(-0.2, 0.95, 24)]
    assert all(0.0 <= p <= 1.0 for p in ps)
    assert ps == sorted(ps) and ps[0] < 0.01 and ps[-1] > 0.99
    # More enrolled speakers: the same score is less sure to be the right one.
    assert cal.confidence(0.55, 3.0, 200) < cal.confidence(0.55, 3.0, 2)


def test_a_raw_threshold_overrides_the_calibration(cal: Calibration) -> None:
    assert AcceptRule(0.01, 0.33, cal).cutoff(2.0, 50) == 0.33
    assert AcceptRule(0.01, None, cal).cutoff(2.0, 50) == pytest.approx(
        cal.threshold(0.01, 2.0, 50))
    assert AcceptRule(0.01, None, None, fallback=0.47).cutoff(2.0, 50) == 0.47
    assert AcceptRule(0.01, None, None).confidence(0.5, 2.0, 3) is None


def test_euclidean_scores_use_the_same_calibration(cal: Calibration) -> None:
    cos = cal.threshold(0.01, 2.0, 10)
    rule = AcceptRule(0.01, None, cal, metric="euclidean")
    assert rule.cutoff(2.0, 10) == pytest.approx(from_cosine(cos, "euclidean"))
    assert to_cosine(from_cosine(0.4, "euclidean"), "euclidean") == pytest.approx(0.4)


def test_a_broken_calibration_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.calibration.yaml"
    bad.write_text("model: m\nfitted_on: x\nspeech_s: [1]\n")
    with pytest.raises(ModelError, match=r"x\.calibration\.yaml: not a calibration"):
        Calibration.load(bad)


# ---------------------------------------------------------------- clusters (units)


def unit(seed: int, dim: int = 16) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=dim)).astype(np.float32)


def near(v: np.ndarray, seed: int, noise: float = 0.15) -> np.ndarray:
    return l2_normalize(v + noise * unit(seed + 1000, len(v)))


def clusters(**kw: object) -> UnknownClusters:
    return UnknownClusters(UnknownConfig(**kw), AcceptRule(threshold=0.7), 16)  # type: ignore[arg-type]


def test_the_same_voice_keeps_its_label_and_a_new_one_gets_the_next() -> None:
    c = clusters()
    a, b = unit(1), unit(2)
    assert c.assign(1, a, 2.0, 0) == "unknown-1"
    c.commit(1, "unknown-1", a, [np.zeros(100, np.int16)], 16000)
    assert c.assign(2, near(a, 2), 2.0, 20000) == "unknown-1"
    c.commit(2, "unknown-1", near(a, 2), [], 30000)
    assert c.assign(3, b, 2.0, 40000) == "unknown-2"
    assert c.labels()["unknown-1"]["turns"] == [1, 2]


def test_a_turn_that_ends_up_elsewhere_drops_its_provisional_cluster() -> None:
    c = clusters()
    assert c.assign(1, unit(1), 2.0, 0) == "unknown-1"
    c.commit(1, None, unit(1), [], 100)  # the turn ended as an enrolled speaker
    assert c.labels() == {}
    assert c.assign(2, unit(2), 2.0, 200) == "unknown-2"  # labels are never reused


def test_clusters_are_bounded_in_number_age_and_speech() -> None:
    c = clusters(max_clusters=2, max_age_s=10.0, keep_speech_s=3.0)
    for t in (1, 2, 3):
        label = c.assign(t, unit(t), 2.0, t * SAMPLE_RATE)
        c.commit(t, label, unit(t), [np.ones(SAMPLE_RATE * 2, np.int16)], t * SAMPLE_RATE)
    assert sorted(c.labels()) == ["unknown-2", "unknown-3"]  # the oldest went first
    assert c.labels()["unknown-3"]["speech_s"] == 2.0
    c.commit(9, "unknown-3", unit(3), [np.full(SAMPLE_RATE * 2, 2, np.int16)], 4 * SAMPLE_RATE)
    speech = c.speech("unknown-3")
    assert speech is not None and len(speech) == 3 * SAMPLE_RATE  # latest 3 s kept
    assert speech[-1] == 2 and speech[0] == 1
    c.expire(14 * SAMPLE_RATE)  # unknown-2 last heard at 2 s: more than 10 s ago
    assert sorted(c.labels()) == ["unknown-3"]
    assert c.take("unknown-3") is not None and c.labels() == {}


# ---------------------------------------------------------------- real speech


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.from_card("campplus")


def test_strangers_get_stable_unknown_labels_and_naming_one_names_its_turns(
        embedder: Embedder, speech_dir: Path) -> None:
    vp = VoiceprintSet(embedder.card.embedding_size, embedder.tag)
    e = enroll(embedder, "p225", [vctk(speech_dir, "p225", u) for u in ("016", "020", "022")])
    vp.add("p225", e.embeddings)
    audio, truth = joined([
        ("p225", vctk(speech_dir, "p225", "003")), ("p226", vctk(speech_dir, "p226", "003")),
        ("p227", vctk(speech_dir, "p227", "003")), ("p226", vctk(speech_dir, "p226", "011")),
        ("p225", vctk(speech_dir, "p225", "008")), ("p227", vctk(speech_dir, "p227", "011")),
    ])
    rec = Recognizer(embedder, vp, RecognizerConfig(scoring=ScoringConfig(false_accept=0.01)))
    turns = [r for r in recognize(rec, audio) if isinstance(r, TurnUpdate) and r.final]
    by_speaker: dict[str, set[str | None]] = {}
    for who, s, t in truth:
        by_speaker.setdefault(who, set()).update(labels_within(turns, s, t))
    assert by_speaker["p225"] == {"p225"}
    assert len(by_speaker["p226"]) == 1 and len(by_speaker["p227"]) == 1, by_speaker
    (u226,), (u227,) = by_speaker["p226"], by_speaker["p227"]
    assert u226 and u227 and u226.startswith("unknown-") and u226 != u227
    # Confidence is the calibrated probability, high for these clear turns.
    assert all(t.confidence > 0.8 for t in turns if t.windows >= 4)

    # Name p226's cluster: enroll its kept speech, as the daemon's name op does.
    assert rec.unknowns is not None
    speech = rec.unknowns.speech(u226)
    assert speech is not None and len(speech) / SAMPLE_RATE >= 3.0
    named = enroll(embedder, "bob", [speech], [u226])
    vp.add("bob", named.embeddings)
    assert rec.unknowns.take(u226) is not None
    # The same stream goes on: p226 speaks again and is bob now; p227 is still unknown.
    more, truth2 = joined([("p226", vctk(speech_dir, "p226", "016")),
                                 ("p227", vctk(speech_dir, "p227", "016"))])
    later = []
    for i in range(0, len(more), 320):
        later += rec.feed(more[i:i + 320])
    later += rec.finish()
    turns2 = [r for r in later if isinstance(r, TurnUpdate) and r.final]
    offset = len(audio) / SAMPLE_RATE
    assert labels_within(turns2, truth2[0][1] + offset, truth2[0][2] + offset) == {"bob"}
    assert labels_within(turns2, truth2[1][1] + offset, truth2[1][2] + offset) == {u227}


def test_a_calibration_of_another_model_is_refused(tmp_path: Path) -> None:
    card = resolve_card("campplus")
    text = card.read_text().replace("file: campplus.onnx", f"file: {card.parent}/campplus.onnx")
    other = (card.parent / "ge2e.calibration.yaml").read_text()
    (tmp_path / "wrong.calibration.yaml").write_text(other)
    (tmp_path / "card.yaml").write_text(
        text.replace("calibration: campplus.calibration.yaml",
                     "calibration: wrong.calibration.yaml"))
    with pytest.raises(ModelError, match="a calibration of 'ge2e"):
        load_card(tmp_path / "card.yaml")


def test_a_calibration_fitted_on_a_little_real_speech_is_sane(
        embedder: Embedder, speech_dir: Path) -> None:
    """The fitting path of weights/calibrate_shipped.py, end to end on a small real subset."""
    from vggvox.eval.calibration_fit import fit, gather, open_set_rates, split_speakers
    from vggvox.eval.lists import read_utterances

    speakers = [f"ls-{n}" for n in (1688, 1998, 2033, 2414, 2609, 3005, 367, 533)]
    speakers = [s for s in speakers if (speech_dir / "librispeech-test-other" / s).is_dir()]
    assert len(speakers) >= 6
    tests, _ = read_utterances(speech_dir / "test_list.csv")
    enroll_list = speech_dir / "enroll_list.csv"
    utts = [u for u in tests if u.speaker in speakers][: 4 * len(speakers)]
    ev = gather(embedder, utts, runs=(1, 2, 4))
    enrolled, _ = read_utterances(enroll_list)
    vps = VoiceprintSet(embedder.card.embedding_size, embedder.tag)
    for s in speakers:
        clips = [load_audio(u.path) for u in enrolled if u.speaker == s]
        vps.add(s, enroll(embedder, s, clips).embeddings)
    cal = fit(ev, vps, embedder.card.name, "test subset")
    assert 0.1 < cal.threshold(0.01, 2.0, 4) < cal.threshold(0.001, 2.0, 4) < 0.95
    assert cal.confidence(0.8, 3.0, 4) > 0.9 > 0.1 > cal.confidence(0.0, 3.0, 4)
    rate, strangers, right = open_set_rates(cal, ev, vps, 0.05, reps=4)
    assert strangers > 0 and 0.0 <= rate < 0.25 and right > 0.8
    assert set(split_speakers((s, "x") for s in speakers).values()) == {"fit", "held"}


def test_a_turn_keeps_its_new_label_while_hysteresis_shows_it() -> None:
    """An update that matches an old voice does not delete the turn's own new one: the
    turn may still close under it."""
    c = clusters()
    a = unit(1)
    c.commit(1, c.assign(1, a, 2.0, 0), a, [], 100)
    assert c.assign(2, unit(2), 2.0, 200) == "unknown-2"
    assert c.assign(2, near(a, 3), 2.0, 300) == "unknown-1"  # one update sounds like 1
    c.commit(2, "unknown-2", unit(2), [np.ones(10, np.int16)], 400)  # closed as shown
    assert sorted(c.labels()) == ["unknown-1", "unknown-2"]
    assert c.labels()["unknown-2"]["turns"] == [2]


def test_new_voices_on_open_turns_do_not_evict_real_ones() -> None:
    c = clusters(max_clusters=2)
    for t in (1, 2):
        c.commit(t, c.assign(t, unit(t), 2.0, t), unit(t), [], t)
    for t in (3, 4, 5):  # turns that first sound new, then end as someone enrolled
        c.assign(t, unit(t), 2.0, t)
        c.commit(t, None, unit(t), [], t)
    assert sorted(c.labels()) == ["unknown-1", "unknown-2"]
    c.commit(6, c.assign(6, unit(6), 2.0, 6), unit(6), [], 6)  # a third real voice
    assert sorted(c.labels()) == ["unknown-2", "unknown-6"]  # numbers are never reused


def test_a_named_label_reports_the_name_and_a_refused_one_comes_back() -> None:
    from vggvox.stream.decider import TurnConfig, TurnDecider
    from vggvox.stream.identify import OpenSetIdentifier
    from vggvox.stream.segmenter import Window
    from vggvox.stream.vad import SpeechEnd, SpeechStart

    c = clusters(keep_speech_s=30.0)
    decider = TurnDecider(OpenSetIdentifier.fixed(VoiceprintSet(16), 0.5), TurnConfig(),
                          0.3, 16, c)
    hop, a, b = 8000, np.eye(16, dtype=np.float32)[0], np.eye(16, dtype=np.float32)[1]

    def window(k: int, v: np.ndarray) -> list:
        start = max(0, k * hop - 32000)
        return decider.window(Window(start, k * hop, np.full(k * hop - start, k, np.int16)), v)

    out = decider.speech_start(SpeechStart(0))
    for k in range(2, 8):
        out += window(k, a)
    for k in range(8, 12):  # another voice inside the same speech segment
        out += window(k, b)
    out += decider.speech_end(SpeechEnd(12 * hop))
    first, second = [r for r in out if isinstance(r, TurnUpdate) and r.final]
    assert (first.unknown, second.unknown) == ("unknown-1", "unknown-2")
    # The first turn's kept speech ends where the change was put, not at its last window.
    speech = c.speech("unknown-1")
    assert speech is not None and len(speech) == first.end - first.start
    taken = c.take("unknown-1")
    assert taken is not None and c.take("unknown-1") is None
    c.put_back(taken)  # the enrollment was refused: nothing lost
    assert "unknown-1" in c.labels()
    c.name("unknown-2", "bob")
    assert c.take("unknown-2") is not None
    decider.speech_start(SpeechStart(13 * hop))
    later = [r for k in range(15, 18) for r in window(k, b)]
    assert later[-1].speaker is None and later[-1].unknown != "unknown-2"
    assert c.named("unknown-2") == "bob"
