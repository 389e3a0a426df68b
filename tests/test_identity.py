"""Identities kept honest (issue 8, section 5): clips appended to a speaker must be their
voice, one enrollment must be one voice, and the store binds to the model file's hash.
Real CAM++, real speech (../shared/data/fixtures: two LibriSpeech and two VCTK speakers,
3 clips of about 4 s each), real SQLite files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vggvox.admission import SAME_VOICE_FALSE_ACCEPT, admit, check_voices, same_voice_rule
from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.enrollment import Enrollment, enroll
from vggvox.errors import ModelMismatchError, VoiceMismatchError
from vggvox.store import VoiceprintStore


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.from_card("campplus")


@pytest.fixture(scope="module")
def clips(fixtures_dir: Path) -> dict[str, list[Path]]:
    """Speaker -> their fixture clips (skips, saying why, without ../shared/data)."""
    names = ["ls-3005", "ls-3331", "vctk-p225", "vctk-p226"]
    return {n: sorted(fixtures_dir.glob(f"{n}__*.wav")) for n in names}


def enrollment(embedder: Embedder, name: str, files: list[Path]) -> Enrollment:
    return enroll(embedder, name, [load_audio(f) for f in files], [f.name for f in files],
                  min_speech_s=1.0)


def test_the_cutoff_is_the_calibrations_at_a_loose_false_accept_rate(
        embedder: Embedder) -> None:
    cal = embedder.card.calibration
    assert cal is not None
    rule = same_voice_rule(embedder.card)
    for seconds in (1.0, 4.0, 30.0):
        assert rule.cutoff(seconds, 1) == pytest.approx(
            cal.threshold(SAME_VOICE_FALSE_ACCEPT, seconds, 1))
    # Far below "name this speaker" (the card's EER threshold): a plausibility check.
    assert 0.1 < rule.cutoff(4.0, 1) < embedder.card.threshold


def test_clips_of_another_voice_appended_to_a_speaker_are_refused(
        embedder: Embedder, clips: dict[str, list[Path]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    admit(store, embedder.card, enrollment(embedder, "alice", clips["ls-3005"][:2]))
    g0 = store.generation()
    intruder = clips["ls-3331"][0]
    with pytest.raises(VoiceMismatchError) as e:
        admit(store, embedder.card, enrollment(embedder, "alice", [intruder]))
    msg = str(e.value)
    assert intruder.name in msg and "against the voiceprint of 'alice'" in msg and "\n" not in msg
    assert "nothing was stored" in msg
    assert store.generation() == g0 and store.speaker("alice").embeddings == 2
    # Her own third clip passes.
    assert admit(store, embedder.card,
                 enrollment(embedder, "alice", clips["ls-3005"][2:])).embeddings == 3
    # Forced: stored, and a WARNING says which clip and its score.
    with caplog.at_level("WARNING", logger="vggvox.admission"):
        info = admit(store, embedder.card, enrollment(embedder, "alice", [intruder]),
                     force=True)
    assert info.embeddings == 4
    assert f"forced enrollment of 'alice': {intruder.name}" in caplog.text
    # --replace starts the voiceprint afresh: nothing to compare with.
    info = admit(store, embedder.card, enrollment(embedder, "alice", clips["vctk-p225"]),
                 replace=True)
    assert info.embeddings == 3


def test_the_issue_8_attack_other_voices_appended_to_a_speaker(
        embedder: Embedder, clips: dict[str, list[Path]], tmp_path: Path) -> None:
    """Issue 8 appended 20 of an attacker's clips to "alice". Each of the three other
    speakers' clips, appended to ls-3005, fails the check."""
    store = VoiceprintStore(tmp_path / "vp.db")
    admit(store, embedder.card, enrollment(embedder, "alice", clips["ls-3005"]))
    attackers = [f for n in ("ls-3331", "vctk-p225", "vctk-p226") for f in clips[n]]
    with pytest.raises(VoiceMismatchError) as e:
        admit(store, embedder.card, enrollment(embedder, "alice", attackers))
    assert all(f.name in str(e.value) for f in attackers)
    assert store.speaker("alice").embeddings == 3


def test_a_second_voice_within_one_enrollment_is_named(
        embedder: Embedder, clips: dict[str, list[Path]], tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    odd = clips["vctk-p226"][0]
    mixed = enrollment(embedder, "bob", [*clips["ls-3331"], odd])
    check = check_voices(embedder.card, mixed)
    assert [s.source for s in check.odd] == [odd.name], check
    with pytest.raises(VoiceMismatchError, match=f"{odd.name} .* against the other clips"):
        admit(store, embedder.card, mixed)
    assert store.speakers() == []
    assert admit(store, embedder.card, mixed, force=True).embeddings == 4
    # One voice: every clip matches the others.
    assert not check_voices(embedder.card, enrollment(embedder, "x", clips["vctk-p225"])).odd


def test_a_single_clip_cannot_be_checked_and_is_not(
        embedder: Embedder, clips: dict[str, list[Path]], tmp_path: Path) -> None:
    one = enrollment(embedder, "carol", clips["vctk-p225"][:1])
    assert check_voices(embedder.card, one).scores == ()
    assert admit(VoiceprintStore(tmp_path / "vp.db"), embedder.card, one).embeddings == 1


def test_a_store_of_another_model_file_is_refused_in_one_line(
        embedder: Embedder, clips: dict[str, list[Path]], tmp_path: Path) -> None:
    """Same card name and version, another ONNX file (another sha256): refused on write and
    on read, as another model is; the list still shows the readable tag."""
    store = VoiceprintStore(tmp_path / "vp.db")
    admit(store, embedder.card, enrollment(embedder, "alice", clips["ls-3005"]))
    other = dataclasses.replace(embedder.card, sha256="f" * 64)
    with pytest.raises(ModelMismatchError) as e:
        admit(store, other, enrollment(embedder, "bob", clips["ls-3331"]))
    assert f"{embedder.card.sha256[:12]}" in str(e.value) and "ffffffffffff" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelMismatchError, match="cannot be scored with"):
        store.voiceprints(other)
    assert [(s.name, s.model) for s in store.speakers()] == [("alice", embedder.tag)]
    names, prints = store.voiceprints(embedder.card)
    assert names == ["alice"] and np.isclose(np.linalg.norm(prints[0]), 1.0)
