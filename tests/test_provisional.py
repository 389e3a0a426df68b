"""Provisional voices (vggvox.provisional): unknown voices remembered from one
recording to the next, in the voiceprint store's file, never counted as enrolled.
Real SQLite files; the real model (campplus-int8) on ../shared fixture clips where a
voice must be a voice."""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from store_reader import Reader, vectors_in_folder

from vggvox.calibration import AcceptRule
from vggvox.errors import ConfusableNameError, ModelMismatchError, StoreError, VoiceMismatchError
from vggvox.modelcard import ModelCard
from vggvox.provisional import HeardVoice, ProvisionalVoices, label_number
from vggvox.provisional_names import suggest
from vggvox.scoring import l2_normalize
from vggvox.store import VoiceprintStore
from vggvox.storebinding import ModelId
from vggvox.stream.recognizer import RecognizerConfig, ScoringConfig
from vggvox.stream.recognizer import merge_rule as recognizer_merge_rule

SPEAKERS = ("ls-3005", "ls-3331", "vctk-p225", "vctk-p226")
M1 = ModelId("m@1", "a" * 64, 192)
RAW = AcceptRule(threshold=0.9)
"""For random vectors: nothing matches but the same vector."""

Clips = dict[str, list[tuple[np.ndarray, float]]]


@pytest.fixture(scope="module")
def real(fixtures_dir: Path) -> tuple[ModelCard, Clips]:
    """The real model's card, and each fixture speaker's clips: (embedding, seconds)."""
    from vggvox.audio import load_audio
    from vggvox.embedder import Embedder

    embedder = Embedder.from_card("campplus-int8")
    clips: Clips = {}
    for s in SPEAKERS:
        for f in sorted(fixtures_dir.glob(f"{s}__*.wav")):
            x = load_audio(f)
            clips.setdefault(s, []).append((embedder.embed(x), len(x) / 16000))
    return embedder.card, clips


def heard(e: np.ndarray, seconds: float = 4.0, start: float = 0.0) -> HeardVoice:
    return HeardVoice(np.asarray(e, np.float32), 1, seconds, start, start + seconds)


def merge_rule(card: ModelCard) -> AcceptRule:
    """As the daemon's unknown clusters merge (0.1 % of new voices taken for old ones)."""
    return recognizer_merge_rule(card, RecognizerConfig())


def secrets(n: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, 192))).astype(np.float32)


def scoring(voiceprint: np.ndarray, cos: float) -> np.ndarray:
    """A unit vector whose cosine with ``voiceprint`` is ``cos``."""
    q = secrets(1, 9)[0]
    q = l2_normalize(q - (q @ voiceprint) * voiceprint)
    return (cos * voiceprint + np.sqrt(1 - cos * cos) * q).astype(np.float32)


def test_the_same_voice_gets_the_same_label_in_the_next_recording(
        tmp_path: Path, real: tuple[ModelCard, Clips]) -> None:
    card, clips = real
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    g0 = store.generation()
    voices, rule = ProvisionalVoices(store, card), merge_rule(card)
    a, b, c = (clips[s] for s in SPEAKERS[:3])
    assert voices.remember("monday.wav", [heard(a[0][0]), heard(b[0][0], 3.1, 10)],
                           rule) == ["unknown-1", "unknown-2"]
    # The next recording: b, a stranger, a (other utterances); a fresh handle on the file.
    again = ProvisionalVoices(VoiceprintStore(store.path), card)
    tuesday = [heard(b[1][0]), heard(c[0][0]), heard(a[1][0], 4.0, 20)]
    assert again.match([h.centroid for h in tuesday], [4.0] * 3, rule) == [
        "unknown-2", None, "unknown-1"]
    assert again.remember("tuesday.wav", tuesday, rule) == ["unknown-2", "unknown-3",
                                                             "unknown-1"]
    one = again.get("unknown-1")
    assert one is not None and one.windows == 2 and one.speech_s == 8.0
    assert [p.recording for p in one.places] == ["monday.wav", "tuesday.wav"]
    assert (one.places[1].start, one.places[1].end) == (20.0, 24.0)
    assert one.first_heard < one.last_heard <= time.time()
    # One remembered voice is given to one voice of a recording at most.
    twice = [heard(a[2][0], 3.5), heard(a[1][0])]
    assert again.match([h.centroid for h in twice], [3.5, 4.0], rule).count("unknown-1") == 1
    # Never enrolled: no speaker, no voiceprint, no model, and the daemon's generation
    # (it reloads the enrolled voiceprints when it moves) did not move.
    assert store.speakers() == [] and store.voiceprints(card)[0] == []
    assert store.model() is None and store.generation() == g0
    assert [v.label for v in again.list()] == ["unknown-1", "unknown-2", "unknown-3"]


def test_provisional_voices_never_count_as_enrolled(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    store.enroll("alice", secrets(1, 1), M1, ["a"], [3])
    ProvisionalVoices(store, M1).remember("r.wav", [heard(e) for e in secrets(3, 2)], RAW)
    assert [s.name for s in store.speakers()] == ["alice"]
    names, prints = store.voiceprints(M1)
    assert names == ["alice"] and prints.shape == (1, 192)


def test_bounded_the_one_heard_longest_ago_erased_first(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    voices = ProvisionalVoices(store, M1, max_voices=3)
    first, second = secrets(3, 1), secrets(2, 2)
    assert voices.remember("a.wav", [heard(e) for e in first], RAW) == [
        "unknown-1", "unknown-2", "unknown-3"]
    assert len(voices.list()) == 3, "at the bound, none is erased"
    voices.remember("b.wav", [heard(first[0])], RAW)  # unknown-1 heard again: newest
    assert voices.remember("c.wav", [heard(e) for e in second], RAW) == [
        "unknown-4", "unknown-5"]
    assert [v.label for v in voices.list()] == ["unknown-1", "unknown-4", "unknown-5"]
    assert vectors_in_folder(tmp_path, first[1:]) == 0, "an evicted voice is still on disk"
    # Labels are never reused, even once every voice is forgotten.
    assert len(voices.forget_older_than(0)) == 3
    assert voices.remember("d.wav", [heard(secrets(1, 3)[0])], RAW) == ["unknown-6"]


def test_forget_erases_every_version_from_the_files(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    voices = ProvisionalVoices(store, M1)
    x, y = secrets(2, 1)
    x2 = l2_normalize(x + 0.05 * secrets(1, 2)[0])
    voices.remember("meeting-a.wav", [heard(x), heard(y)], RAW)
    voices.remember("meeting-b.wav", [heard(x2)], RAW)  # unknown-1 updated: x + x2
    one = voices.get("unknown-1")
    assert one is not None and one.windows == 2
    versions = np.stack([x, one.total])  # the first one may be in the -wal still
    assert vectors_in_folder(tmp_path, one.total[None]) == 1
    assert voices.forget("unknown-1") and not store.erasure_pending
    assert vectors_in_folder(tmp_path, versions) == 0, "a forgotten voice is still on disk"
    assert not voices.forget("unknown-1") and not voices.forget("alice")
    assert vectors_in_folder(tmp_path, y[None]) == 1
    assert voices.forget_older_than(3600) == []  # heard just now
    assert voices.forget_older_than(0) == ["unknown-2"]
    assert vectors_in_folder(tmp_path, y[None]) == 0
    blobs = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    assert b"meeting-a.wav" not in blobs, "where it was heard is erased too"


def test_forget_with_a_reader_is_pending_then_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vggvox.erasure

    store = VoiceprintStore(tmp_path / "voiceprints.db")
    voices = ProvisionalVoices(store, M1)
    secret = secrets(2, 1)
    voices.remember("r.wav", [heard(e) for e in secret], RAW)
    assert store.checkpoint()
    monkeypatch.setattr(vggvox.erasure, "RETRY_S", 0.0)
    reader = Reader(store.path)
    try:
        assert voices.forget("unknown-1") and store.erasure_pending
        assert not store.retry_erasure()
    finally:
        reader.end()
    # The last connection to close checkpoints the log (SQLite's own): gone already.
    assert vectors_in_folder(tmp_path, secret[:1]) == 0
    assert store.retry_erasure() and not store.erasure_pending
    assert vectors_in_folder(tmp_path, secret[1:]) == 1


def test_another_models_voices_are_refused(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    ProvisionalVoices(store, M1).remember("r.wav", [heard(secrets(1, 1)[0])], RAW)
    other = ProvisionalVoices(store, ModelId("m@1", "b" * 64, 192))
    with pytest.raises(ModelMismatchError, match="provisional voices of model m@1"):
        other.match([secrets(1, 2)[0]], [4.0], RAW)
    with pytest.raises(ModelMismatchError):
        other.remember("s.wav", [heard(secrets(1, 2)[0])], RAW)
    # Enrolled speakers of another model refuse it as well: one store, one model.
    store.enroll("alice", secrets(1, 3), ModelId("n@1", "c" * 64, 192), ["a"], [3])
    with pytest.raises(ModelMismatchError, match="holds voiceprints of model n@1"):
        ProvisionalVoices(store, M1).remember("t.wav", [heard(secrets(1, 4)[0])], RAW)
    assert other.forget("unknown-1"), "any model's voice can be forgotten"
    with pytest.raises(StoreError, match="one vector of 192"):
        ProvisionalVoices(store, M1).remember("u.wav", [heard(np.ones(8))], RAW)


def test_the_table_is_added_to_a_store_of_today(tmp_path: Path) -> None:
    """A store written before provisional voices keeps its schema, speakers and tables;
    the new table is added beside them, and the store reopens as before."""
    path = tmp_path / "voiceprints.db"
    VoiceprintStore(path).enroll("alice", secrets(2, 1), M1, ["a", "b"], [3, 3])
    with sqlite3.connect(path) as db:
        before = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    ProvisionalVoices(VoiceprintStore(path), M1).remember("r.wav", [heard(secrets(1, 2)[0])],
                                                          RAW)
    with sqlite3.connect(path) as db:
        after = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    assert after - before == {"provisional", "sqlite_sequence"} and schema == "2"
    reopened = VoiceprintStore(path)
    assert [(s.name, s.embeddings) for s in reopened.speakers()] == [("alice", 2)]


def test_labels() -> None:
    assert [label_number(s) for s in ("unknown-7", " unknown-12 ", "unknown-0", "unknown-x",
                                      "alice", "unknown-07")] == [7, 12, None, None, None, None]


def test_suggest_shows_a_close_enrolled_speaker(real: tuple[ModelCard, Clips]) -> None:
    card, _ = real
    rule = ScoringConfig().rule(card)
    prints = secrets(2, 1)
    voices = ("alice", "bob"), prints
    loose = AcceptRule(10 * rule.false_accept, None, card.calibration).cutoff(4.0, 2)
    strict = rule.cutoff(4.0, 2)
    assert loose < strict

    def at(cos: float) -> np.ndarray:
        return scoring(prints[1], cos)

    suggestion = suggest(at((loose + strict) / 2), 4.0, voices, rule)
    assert suggestion is not None and suggestion[0] == "bob"
    assert suggestion[1] == pytest.approx((loose + strict) / 2, abs=1e-4)
    assert suggest(at(loose - 0.02), 4.0, voices, rule) is None
    assert suggest(at(0.9), 4.0, voices, RAW) is None, "a raw threshold suggests nothing"


def test_promote_with_each_check(tmp_path: Path, real: tuple[ModelCard, Clips]) -> None:
    """name unknown-N NAME: the usual checks refuse (nothing stored, the voice kept),
    then the voice is enrolled, the provisional one erased, the generation bumped."""
    card, clips = real
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    for s in ("ls-3005", "vctk-p225"):
        store.enroll(s, np.stack([e for e, _ in clips[s][:2]]), card, ["a", "b"], [4, 4])
    voices, rule = ProvisionalVoices(store, card), ScoringConfig().rule(card)
    labels = voices.remember("r.wav", [heard(clips["ls-3331"][0][0]),
                                       heard(clips["ls-3005"][2][0], 3.5)], merge_rule(card))
    assert labels == ["unknown-1", "unknown-2"]
    g0 = store.generation()
    refusals = [
        ("unknown-2", "carol", VoiceMismatchError, "sounds like the enrolled speaker 'ls-3005'"),
        ("unknown-1", "LS-3005", ConfusableNameError, "looks like"),
        ("unknown-1", "vctk-p225", VoiceMismatchError, "do not match"),
        ("unknown-1", " ", StoreError, "non-empty"),
        ("unknown-9", "dave", StoreError, "no provisional voice 'unknown-9'"),
    ]
    for label, name, error, words in refusals:
        with pytest.raises(error, match=words):
            voices.promote(label, name, rule)
    assert store.generation() == g0 and [v.label for v in voices.list()] == labels
    assert [s.name for s in store.speakers()] == ["ls-3005", "vctk-p225"]
    info = voices.promote("unknown-1", "bob", rule)
    assert (info.name, info.embeddings, info.seconds) == ("bob", 1, 4.0)
    assert store.generation() == g0 + 1, "the daemon reloads its voiceprints"
    assert voices.get("unknown-1") is None
    bob = store.voiceprint_of("bob", card)
    assert bob is not None and float(bob @ clips["ls-3331"][1][0]) > rule.cutoff(4.0, 3)
    forced = voices.promote("unknown-2", "carol", rule, force=True)
    assert forced.name == "carol" and voices.list() == []


# -- the client's commands, on the store file ----------------------------------------------


def test_parse_age() -> None:
    from vggvox.errors import VggvoxError
    from vggvox_client.voices import parse_age

    assert [parse_age(t) for t in ("30d", "12h", "90m", "45s", "2w", "1.5h", " 0s")] == [
        2592000, 43200, 5400, 45, 1209600, 5400, 0]
    for bad in ("30", "d", "-1d", "30x", "1e3s", "30 days", ""):
        with pytest.raises(VggvoxError, match="a number and a unit"):
            parse_age(bad)


@pytest.fixture
def on_file(tmp_path: Path, real: tuple[ModelCard, Clips], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[VoiceprintStore, list[str]]:
    """A store found as the daemon finds it (the user's config names it), with ls-3005
    enrolled and two provisional voices: ls-3331, and one close to ls-3005 (not named).
    No daemon: a command that tried to reach one fails the test."""
    from vggvox_client import daemon_cmds

    card, clips = real
    (tmp_path / "config" / "vggvox").mkdir(parents=True)
    (tmp_path / "config" / "vggvox" / "vggvoxd.yaml").write_text(
        f"store:\n  path: {tmp_path / 'data' / 'voiceprints.db'}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(daemon_cmds, "connect", lambda args: pytest.fail("reached for vggvoxd"))
    store = VoiceprintStore(tmp_path / "data" / "voiceprints.db")
    store.enroll("ls-3005", np.stack([e for e, _ in clips["ls-3005"][:2]]), card, ["a", "b"],
                 [4, 4])
    rule = ScoringConfig().rule(card)
    loose = AcceptRule(10 * rule.false_accept, None, card.calibration).cutoff(4.0, 1)
    enrolled = store.voiceprint_of("ls-3005", card)
    assert enrolled is not None
    close = scoring(enrolled, (loose + rule.cutoff(4.0, 1)) / 2)
    labels = ProvisionalVoices(store, card).remember(
        "/rec/monday.wav", [heard(clips["ls-3331"][0][0]), heard(close, 4.0, 30)],
        merge_rule(card))
    return store, labels


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from vggvox_client.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_speakers_provisional_lists_them_with_a_suggestion(
        on_file: tuple[VoiceprintStore, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    import json

    store, labels = on_file
    assert labels == ["unknown-1", "unknown-2"]
    code, out, _ = run_cli(capsys, "speakers", "--provisional", "--json")
    got = json.loads(out)
    assert code == 0 and got["store"] == str(store.path)
    rows = {r["label"]: r for r in got["provisional"]}
    assert rows["unknown-1"]["suggestion"] is None
    assert rows["unknown-2"]["suggestion"]["name"] == "ls-3005"
    assert rows["unknown-2"]["places"][0]["recording"] == "/rec/monday.wav"
    assert rows["unknown-2"]["places"][0]["start"] == 30.0 and rows["unknown-2"]["speech_s"] == 4
    assert rows["unknown-1"]["first_heard"].endswith("+00:00")  # ISO 8601, UTC
    code, out, _ = run_cli(capsys, "speakers", "--provisional")
    assert code == 0 and out.startswith(f"2 provisional voices in {store.path}\n")
    assert "in monday.wav" in out and "close to ls-3005" in out
    assert "vggvox-client name unknown-2 ls-3005" in out, "suggested, not applied"
    assert [s.name for s in store.speakers()] == ["ls-3005"]
    missing = store.path.parent / "none.db"
    code, out, _ = run_cli(capsys, "speakers", "--provisional", "--store", str(missing))
    assert code == 0 and "0 provisional voices" in out and not missing.exists()


def test_cli_name_promotes_a_provisional_voice(
        on_file: tuple[VoiceprintStore, list[str]], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vggvox_client import daemon_cmds

    store, _ = on_file
    g0 = store.generation()
    code, _, err = run_cli(capsys, "name", "unknown-2", "LS-3005")
    assert code == 2 and err.count("\n") == 1 and "looks like" in err
    code, out, _ = run_cli(capsys, "name", "unknown-1", "bob")
    assert code == 0 and out.startswith("unknown-1 is now bob (added): 4.0 s of speech")
    assert [s.name for s in store.speakers()] == ["bob", "ls-3005"]
    assert store.generation() == g0 + 1, "a running daemon reloads its voiceprints"
    assert [v.label for v in ProvisionalVoices.of_any_model(store).list()] == ["unknown-2"]
    # Not (or no longer) a provisional voice: the daemon's live voices, as before.
    asked: list[str] = []

    def daemon(conn: object, args: argparse.Namespace) -> int:
        asked.append(f"{args.command} {getattr(args, 'unknown', '')}".strip())
        return 0

    monkeypatch.setattr(daemon_cmds, "connect", lambda args: None)
    monkeypatch.setitem(daemon_cmds.RUNS, "name", daemon)
    monkeypatch.setitem(daemon_cmds.RUNS, "speakers", daemon)
    assert run_cli(capsys, "name", "unknown-1", "carol")[0] == 0
    assert run_cli(capsys, "speakers")[0] == 0 and asked == ["name unknown-1", "speakers"]


def test_cli_forget_and_bad_input(tmp_path: Path, on_file: tuple[VoiceprintStore, list[str]],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    store, _ = on_file
    voices = ProvisionalVoices.of_any_model(store)
    kept = np.stack([v.total for v in voices.list()])
    for argv, words in [
        (["forget", "--provisional", "--older-than", "30x"], "a number and a unit"),
        (["forget", "--older-than", "30d"], "--provisional"),
        (["forget", "ls-3005"], "vggvox-client remove NAME"),
        (["forget", "unknown-9"], "no provisional voice 'unknown-9'"),
        (["forget"], "LABEL"),
        (["forget", "unknown-1", "--provisional", "--older-than", "1d"], "LABEL"),
        (["forget", "unknown-1", "--store", str(tmp_path / "none.db")], "no store at"),
        (["speakers", "--store", str(store.path)], "go with --provisional"),
    ]:
        code, out, err = run_cli(capsys, *argv)
        assert (code, out, err.count("\n")) == (2, "", 1), (argv, err)
        assert err.startswith("vggvox-client: error: ") and words in err, (argv, err)
    assert len(voices.list()) == 2 and vectors_in_folder(store.path.parent, kept) == 2
    assert not (tmp_path / "none.db").exists()
    code, out, _ = run_cli(capsys, "forget", "unknown-1", "--json")
    assert code == 0 and json.loads(out) == {"forgotten": ["unknown-1"], "erasure": "complete"}
    code, out, _ = run_cli(capsys, "forget", "--provisional", "--older-than", "30d")
    assert code == 0 and out.startswith("forgot 0 provisional voices")
    code, out, _ = run_cli(capsys, "forget", "--provisional", "--older-than", "0s")
    assert code == 0 and out == "forgot 1 provisional voice last heard more than 0s ago: " \
                                "unknown-2\n"
    assert voices.list() == [] and vectors_in_folder(store.path.parent, kept) == 0
    assert [s.name for s in store.speakers()] == ["ls-3005"], "enrolled speakers untouched"
