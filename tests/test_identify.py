"""``vggvox-client identify`` (issue 24): who spoke when in recordings, in-process, on
real speech with the real model; its RTTM read back and scored by pyannote.metrics,
and the daemon's ``replay --rttm`` agreeing with the in-process path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from daemon_proc import DaemonProcess
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from vggvox.calibration import AcceptRule
from vggvox.eval import Conversation, ConversationSpec, build_conversations
from vggvox.eval.lists import read_utterances
from vggvox.eval.remembered import consistency, split_conversation
from vggvox.recording import recluster
from vggvox.recording.identify import RecordingIdentifier, _Turn
from vggvox.recording.outputs import rttm_text, timeline_lines
from vggvox.recording.rttm import read_rttm
from vggvox.recording.segments import RecordingResult, SpeakerSegment, mark_overlaps
from vggvox.scoring import Match
from vggvox.store import VoiceprintStore
from vggvox.stream.identify import Identity
from vggvox_client.cli import main
from vggvox_client.enroll import enroll

CLIENT = Path(sys.executable).parent / "vggvox-client"
# 4 enrolled speakers and 2 strangers, as the targets; short, for the suite.
SPEC = ConversationSpec(n_conversations=2, duration_s=50.0, n_enrolled=4, n_strangers=2,
                        seed=11)
COLLAR = 0.5  # pyannote's collar is the whole width: 0.25 s each side of a boundary


@pytest.fixture(scope="module")
def convs(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Conversation]:
    material, bad = read_utterances(speech_dir / "test_list.csv")
    enroll_utts, bad_enroll = read_utterances(speech_dir / "enroll_list.csv")
    assert not bad and not bad_enroll
    return build_conversations(material, enroll_utts, SPEC, tmp_path_factory.mktemp("convs"))


def identify(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(CLIENT), "identify", *map(str, args)], capture_output=True,
                       text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def der(truth: Path, hyp: Path, file_id: str) -> float:
    ref = load_rttm(str(truth))[file_id]
    out = load_rttm(str(hyp))[file_id]
    return float(DiarizationErrorRate(collar=COLLAR)(ref, out))


@pytest.fixture(scope="module")
def answer(convs: list[Conversation], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("answer")
    c = convs[0]
    identify(c.wav, "--enroll-list", c.enroll_list, "--rttm", out / "all.rttm",
             "--json", out / "all.json", "--workers", "1", "--cache", out / "cache")
    return out, json.loads((out / "all.json").read_text())


def test_names_the_enrolled_and_labels_the_strangers(
        convs: list[Conversation], answer: tuple[Path, dict]) -> None:
    out, doc = answer
    c = convs[0]
    [rec] = doc["recordings"]
    speakers = {s["speaker"] for s in rec["speakers"]}
    assert set(c.enrolled) <= speakers
    unknown = {s for s in speakers if s.startswith("unknown-")}
    assert 1 <= len(unknown) <= 2 * len(c.strangers)
    # Read back by pyannote's own RTTM reader, scored by pyannote.metrics.
    assert der(c.rttm, out / "all.rttm", c.wav.stem) <= 0.10
    for seg in rec["segments"]:
        assert set(seg) == {"start", "end", "speaker", "enrolled", "score", "confidence",
                            "overlap", "candidate"}
        assert seg["end"] > seg["start"]
        assert seg["enrolled"] == (seg["speaker"] in c.enrolled)
    talk = {s["speaker"]: s["talk_s"] for s in rec["speakers"]}
    assert sum(talk.values()) <= rec["duration_s"]


def test_the_cache_and_the_workers_change_nothing(
        convs: list[Conversation], answer: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = answer
    c0, c1 = convs
    # Cached (same audio, same settings): no window is embedded again.
    identify(c0.wav, c1.wav, "--enroll-list", c0.enroll_list, "--rttm", f"{tmp_path}/r/",
             "--json", f"{tmp_path}/j/", "--workers", "2", "--cache", out / "cache")
    # A folder's JSON files have the shape of the one file: {"recordings": [...]}.
    one = json.loads((tmp_path / "j" / f"{c1.wav.stem}.json").read_text())
    assert [r["file_id"] for r in one["recordings"]] == [c1.wav.stem]
    assert (tmp_path / "r" / f"{c0.wav.stem}.rttm").read_text() == \
        (out / "all.rttm").read_text()
    # RTTM on stdout is the whole of stdout (no summary), and a cached run says so.
    piped = identify(c0.wav, "--enroll-list", c0.enroll_list, "--rttm", "-", "--workers", "1",
                     "--cache", out / "cache", "--json", tmp_path / "cached.json")
    assert piped.stdout == (out / "all.rttm").read_text()
    assert json.loads((tmp_path / "cached.json").read_text())["recordings"][0]["cached"]
    single = tmp_path / "one.rttm"
    identify(c1.wav, "--enroll-list", c0.enroll_list, "--rttm", single, "--no-cache",
             "--workers", "1")
    assert (tmp_path / "r" / f"{c1.wav.stem}.rttm").read_text() == single.read_text()


def test_evaluate_scores_what_identify_answers(
        convs: list[Conversation], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """evaluate --identify: identify's whole-file answer scored by pyannote.metrics beside
    the streaming engine's; an RTTM with no speaker in it is one line."""
    c = convs[0]
    r = subprocess.run([str(CLIENT), "evaluate", str(c.wav), "--rttm", str(c.rttm),
                        "--enroll-list", str(c.enroll_list), "--identify", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    whole, live = doc["identify"]["with_overlap"], doc["diarization"]["with_overlap"]
    assert 0 <= whole["der"] <= 0.10 and 0 <= live["der"] <= 0.15
    empty = tmp_path / "empty.rttm"
    empty.write_text(";; nothing\n")
    code = main(["evaluate", str(c.wav), "--rttm", str(empty), "--enroll-list",
                 str(c.enroll_list)])
    assert (code, capsys.readouterr().err.strip()) == (
        2, f"vggvox-client: error: {empty}: no SPEAKER lines: nothing to score against")


def test_bad_input_is_one_line(convs: list[Conversation], tmp_path: Path) -> None:
    c = convs[0]
    r = identify(tmp_path / "missing.wav", "--enroll-list", c.enroll_list, ok=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"skipped {tmp_path / 'missing.wav'}")
    assert "Traceback" not in r.stderr
    r = identify(c.wav, "--enroll-list", c.enroll_list, "--rttm", tmp_path / "no" / "x.rttm",
                 ok=False)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"vggvox-client: error: --rttm {tmp_path}/no/x.rttm: folder "
                                f"{tmp_path}/no does not exist")
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    r = identify(c.wav, "--enroll-list", c.enroll_list, "--cache", bad, ok=False)
    assert (r.returncode, r.stderr.strip()) == (2, f"vggvox-client: error: --cache {bad}: "
                                                   "not a folder")
    r = identify(c.wav, "--enroll-list", c.enroll_list, "--transcript", bad, "--srt",
                 tmp_path / "o.srt", ok=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"vggvox-client: error: {bad}")
    assert not (tmp_path / "o.srt").exists()
    r = identify(c.wav, c.wav, "--transcript", bad, "--srt", tmp_path / "o.srt", ok=False)
    assert r.returncode == 2 and "one recording; 2 were given" in r.stderr


def test_the_daemon_replay_writes_the_same_rttm(
        convs: list[Conversation], tmp_path: Path) -> None:
    """replay --rttm (the daemon's turns) and identify --live (the same engine in-process)
    give the same lines; the default path, which decides again over the whole file,
    stays close to both."""
    c = convs[1]
    cfg = tmp_path / "vggvoxd.yaml"
    # A room adapts to its channel as it hears it: off, so that both sides use one rule.
    cfg.write_text(yaml.safe_dump({"scoring": {"adapt": False}}))
    d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)]).start()
    try:
        enrolling, _ = read_utterances(c.enroll_list)
        for name in c.enrolled:
            enroll(d.conn, name, [u.path for u in enrolling if u.speaker == name], None,
                   False, 16 << 20, force=True)
        r = subprocess.run([str(CLIENT), "--control", d.conn.control, "--events",
                            d.conn.events, "replay", str(c.wav), "--rttm",
                            str(tmp_path / "daemon.rttm")], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    finally:
        d.stop()
    common = ("--store", d.store, "--config", cfg, "--no-cache", "--workers", "1")
    identify(c.wav, "--live", "--rttm", tmp_path / "live.rttm", *common)
    identify(c.wav, "--rttm", tmp_path / "offline.rttm", *common)
    daemon_lines = (tmp_path / "daemon.rttm").read_text()
    assert daemon_lines and daemon_lines == (tmp_path / "live.rttm").read_text()
    assert der(tmp_path / "daemon.rttm", tmp_path / "offline.rttm", c.wav.stem) <= 0.05
    assert der(c.rttm, tmp_path / "offline.rttm", c.wav.stem) <= \
        der(c.rttm, tmp_path / "daemon.rttm", c.wav.stem) + 0.01


# -- the parts, on made-up numbers ---------------------------------------------------------


def _unit(v: list[float]) -> np.ndarray:
    x = np.asarray(v, dtype=np.float32)
    return x / np.linalg.norm(x)


def test_recluster_merges_one_voice_and_keeps_two_apart() -> None:
    rule = AcceptRule(threshold=0.8)
    a, b = _unit([1, 0, 0]), _unit([0, 1, 0])
    near_a = _unit([1, 0.1, 0])
    turns = [recluster.TurnEvidence(v * 4, 4, 2.0) for v in (a, b, near_a, b, a)]
    assert recluster.cluster(turns, rule) == [0, 1, 0, 1, 0]
    assert recluster.cluster([], rule) == []
    # A raw threshold above every score: nothing merges.
    assert recluster.cluster(turns, AcceptRule(threshold=1.01)) == [0, 1, 2, 3, 4]


def seg(a: float, b: float, who: str | None) -> SpeakerSegment:
    return SpeakerSegment(a, b, who, who is not None and not who.startswith("unknown"),
                          0.7, 0.9)


def test_overlap_marks_both_voices_where_a_neighbour_is_near() -> None:
    segs = [seg(0, 5, "alice"), seg(5, 9, "bob"), seg(20, 25, "alice")]
    out = mark_overlaps(segs, [(4.0, 5.5), (22.0, 23.0)])
    inside = [(s.start, s.end, s.speaker) for s in out if s.overlap]
    # 4-5.5: alice's end and bob's start are cut there, and each voice is labelled over
    # the whole stretch. 22-23: nobody else within reach, one voice, flagged.
    assert sorted(inside) == [(4.0, 5.0, "alice"), (4.0, 5.0, "bob"), (5.0, 5.5, "alice"),
                              (5.0, 5.5, "bob"), (22.0, 23.0, "alice")]
    # Alone in a stretch, the other voice that begins or ends nearest to it (within
    # reach) is the second one.
    two = mark_overlaps([seg(0, 5, "alice"), seg(4.6, 9, "bob")], [(3.0, 4.0)])
    assert sorted((s.start, s.end, s.speaker) for s in two if s.overlap) == \
        [(3.0, 4.0, "alice"), (3.0, 4.0, "bob")]
    result = RecordingResult("x.wav", "x", 30.0, tuple(out))
    # Pieces cut at an overlap stay one turn; the overlap counts for both voices' time.
    assert [(t.speaker, t.turns, t.talk_s) for t in result.totals()] == \
        [("alice", 2, 10.5), ("bob", 1, 5.0)]
    lines = rttm_text(result).splitlines()
    # The pieces of one voice are one RTTM line again.
    assert lines == [
        "SPEAKER x 1 0.000 5.500 <NA> <NA> alice <NA> <NA>",
        "SPEAKER x 1 4.000 5.000 <NA> <NA> bob <NA> <NA>",
        "SPEAKER x 1 20.000 5.000 <NA> <NA> alice <NA> <NA>",
    ]


def test_weak_evidence_is_no_decision() -> None:
    """A label whose calibrated confidence is under min_confidence is not asserted."""
    def turn(confidence: float) -> _Turn:
        return _Turn(0, 32000, np.ones(3, np.float32), 3,
                     Identity("alice", score=0.47, confidence=confidence,
                              top=[Match("alice", 0.47)]))

    weak = RecordingIdentifier._segment(turn(0.01), "alice", 0.5)
    assert (weak.speaker, weak.enrolled, weak.candidate) == (None, False, "alice")
    sure = RecordingIdentifier._segment(turn(0.9), "alice", 0.5)
    assert (sure.speaker, sure.enrolled, sure.candidate) == ("alice", True, None)
    doubt = _Turn(0, 32000, np.ones(3, np.float32), 3,
                  Identity(None, score=0.44, confidence=0.2, top=[Match("alice", 0.44)]))
    nobody = RecordingIdentifier._segment(doubt, "unknown-1", 0.5)
    assert (nobody.speaker, nobody.candidate) == (None, "alice")
    result = RecordingResult("x.wav", "x", 2.0, (weak,))
    assert rttm_text(result) == ""
    assert "(no decision; leans to alice)" in timeline_lines(result.segments)[0]


def test_a_segment_without_decision_stays_out_of_the_rttm() -> None:
    result = RecordingResult("x.wav", "x", 10.0, (seg(0, 1, None), seg(1, 3, "alice")))
    assert rttm_text(result) == "SPEAKER x 1 1.000 2.000 <NA> <NA> alice <NA> <NA>\n"
    assert [t.speaker for t in result.totals()] == ["alice"]


def test_rttm_round_trip(tmp_path: Path) -> None:
    result = RecordingResult("m.wav", "m", 10.0, (seg(0.5, 2.25, "alice"),
                                                   seg(2.5, 4.0, "unknown-1")))
    (tmp_path / "m.rttm").write_text(rttm_text(result))
    assert [(s.start, s.end, s.speaker) for s in read_rttm(tmp_path / "m.rttm")] == \
        [(0.5, 2.25, "alice"), (2.5, 4.0, "unknown-1")]


# -- voices remembered across recordings (--remember) ----------------------------------------


def test_remembered_voices_keep_their_label_across_recordings(
        speech_dir: Path, tmp_path: Path) -> None:
    material, _ = read_utterances(speech_dir / "test_list.csv")
    enrolling, _ = read_utterances(speech_dir / "enroll_list.csv")
    spec = ConversationSpec(n_conversations=1, duration_s=120.0, n_enrolled=2, n_strangers=2,
                            stranger_fraction=0.5, seed=5)
    [c] = build_conversations(material, enrolling, spec, tmp_path / "conv")
    parts = split_conversation(c, tmp_path / "parts")
    store = tmp_path / "voices.db"
    common = ("--enroll-list", c.enroll_list, "--store", store, "--remember", "--no-cache",
              "--workers", "1", "--no-overlap")
    # The first recording in one run, the next two in another: the store carries them.
    identify(parts[0].wav, "--json", tmp_path / "a.json", *common)
    identify(parts[1].wav, parts[2].wav, "--json", tmp_path / "b.json", *common)
    docs = [*json.loads((tmp_path / "a.json").read_text())["recordings"],
            *json.loads((tmp_path / "b.json").read_text())["recordings"]]
    outputs = [[SpeakerSegment(s["start"], s["end"], s["speaker"], s["enrolled"], 0.0, None)
                for s in doc["segments"]] for doc in docs]
    found = consistency(parts, outputs, c.enrolled)
    assert {voice.speaker for voice in found} == set(c.strangers)
    assert max(voice.recordings for voice in found) >= 2  # a voice heard in more than one recording
    for voice in found:
        assert voice.label is not None and voice.label.startswith("unknown-"), voice
        assert voice.share >= 0.9, voice
    # Kept in the store as provisional voices, never as enrolled speakers.
    def kept() -> list[dict]:
        r = subprocess.run([str(CLIENT), "speakers", "--provisional", "--store", str(store),
                            "--json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return sorted(json.loads(r.stdout)["provisional"], key=lambda v: v["label"])

    before = kept()
    assert before and all(v["label"].startswith("unknown-") for v in before)
    # A recording identified again is recognised, not added again: the same labels, the
    # same seconds of speech.
    again = identify(parts[0].wav, "--json", "-", *common).stdout
    assert json.loads(again)["recordings"][0]["segments"] == docs[0]["segments"]
    assert [(v["label"], v["speech_s"]) for v in kept()] == \
        [(v["label"], v["speech_s"]) for v in before]
    assert VoiceprintStore(store).speakers() == []
