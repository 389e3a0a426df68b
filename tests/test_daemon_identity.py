"""Issue 8, section 5, through the real daemon and client: appended clips checked against
the voiceprint (``force`` passes them, logged), look-alike names, naming an unknown voice
with ``--force``, and a removal that a reader holds up, finished by the run loop."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_proc import DaemonProcess
from speakers_fixture import joined
from store_reader import Reader, vectors_in_folder

from vggvox.audio import load_audio, to_int16
from vggvox_client import cli
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll

MAX_BYTES = 16 * 1024 * 1024


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path).start()
    yield d
    d.stop()


@pytest.fixture
def clips(fixtures_dir: Path) -> dict[str, list[Path]]:
    return {n: sorted(fixtures_dir.glob(f"{n}__*.wav")) for n in ("ls-3005", "ls-3331")}


def argv(d: DaemonProcess) -> list[str]:
    return ["--control", d.conn.control, "--events", d.conn.events, "--timeout", "60"]


def embeddings_of(d: DaemonProcess, name: str) -> int:
    return next(s["embeddings"] for s in d.conn.request("list")["speakers"] if s["name"] == name)


def test_enroll_refuses_another_voice_and_look_alike_names_unless_forced(
        daemon: DaemonProcess, clips: dict[str, list[Path]],
        capsys: pytest.CaptureFixture[str]) -> None:
    first = enroll(daemon.conn, "alice", clips["ls-3005"][:2], None, False, MAX_BYTES)
    assert first["action"] == "added"
    # The same name again, without replace: the clips join the voiceprint, and it says so.
    more = clips["ls-3005"][2:] + clips["ls-3005"][:1]  # 3 s of speech needs two clips
    again = enroll(daemon.conn, "alice", more, None, False, MAX_BYTES)
    assert again["action"] == "appended" and again["embeddings"] == 4
    redo = enroll(daemon.conn, "alice", clips["ls-3005"][:2], None, True, MAX_BYTES)
    assert redo["action"] == "replaced" and redo["embeddings"] == 2
    other = clips["ls-3331"][0]
    with pytest.raises(ClientError, match=rf"do not match: clip0 .* scores .* against the "
                                          rf"voiceprint of 'alice'.*\[clip0 = {other}\]"):
        enroll(daemon.conn, "alice", [other], None, False, MAX_BYTES)
    assert embeddings_of(daemon, "alice") == 2
    assert cli.main([*argv(daemon), "enroll", "alice", str(other), "--force"]) == 0
    assert embeddings_of(daemon, "alice") == 3
    assert "WARNING vggvox.admission: forced enrollment of 'alice': clip0" in daemon.output()

    assert cli.main([*argv(daemon), "enroll", "Alice", *map(str, clips["ls-3331"])]) == 2
    assert "'Alice' looks like the enrolled speaker 'alice'" in capsys.readouterr().err
    assert cli.main([*argv(daemon), "enroll", "Alice", *map(str, clips["ls-3331"]),
                     "--force"]) == 0
    assert sorted(s["name"] for s in daemon.conn.request("list")["speakers"]) == \
        ["Alice", "alice"]
    with pytest.raises(ClientError, match="field 'force' must be"):
        daemon.conn.request("enroll", name="bob", audio=[b"\0\0"], force="yes")


def test_naming_an_unknown_voice_as_another_speaker_needs_force(
        daemon: DaemonProcess, clips: dict[str, list[Path]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """`vggvox-client name unknown-N alice` adds that voice's speech to alice: refused when
    it is not her voice (and the voice stays nameable), done with --force."""
    enroll(daemon.conn, "alice", clips["ls-3005"], None, False, MAX_BYTES)
    audio, _ = joined([("ls-3331", load_audio(f)) for f in clips["ls-3331"]])
    sub = daemon.conn.subscribe(["turn"])
    time.sleep(0.3)
    pcm, session = to_int16(audio), "b" * 32
    deadline = time.monotonic() + 60
    while len(pcm) and time.monotonic() < deadline:  # kept open: final=False
        reply = daemon.conn.request("replay", session=session, audio=pcm[:16000].tobytes())
        pcm = pcm[reply["accepted"]:]
    label = None
    while label is None and time.monotonic() < deadline:
        ev = daemon.conn.receive(sub, 0.5)
        if ev and ev["final"] and ev["unknown"]:
            label = ev["unknown"]
    sub.close()
    assert label, "no unknown voice within 60 s"
    assert cli.main([*argv(daemon), "name", label, "alice"]) == 2
    assert "do not match" in capsys.readouterr().err
    assert embeddings_of(daemon, "alice") == 3
    assert cli.main([*argv(daemon), "name", label, "alice", "--force"]) == 0
    assert f"{label} on " in capsys.readouterr().out
    assert embeddings_of(daemon, "alice") == 4


def test_remove_says_whether_erasure_is_complete_and_the_daemon_finishes_it(
        daemon: DaemonProcess, clips: dict[str, list[Path]]) -> None:
    """With another process reading the store, `remove` answers "pending"; once that
    reader ends, the daemon's run loop completes the erasure (INFO) within seconds, and
    the removed vectors are in no file of the store's folder."""
    for name, files in clips.items():
        enroll(daemon.conn, name, files, None, False, MAX_BYTES)
    with sqlite3.connect(daemon.store) as db:
        secret = np.stack([np.frombuffer(v, np.float32) for (v,) in db.execute(
            "SELECT vector FROM embeddings WHERE speaker = 'ls-3005'")])
    assert len(secret) == 3 and vectors_in_folder(daemon.tmp, secret) == 3
    reader = Reader(daemon.store)
    try:
        reply = daemon.conn.request("remove", name="ls-3005")
        assert reply["erasure"] == "pending", reply
        assert vectors_in_folder(daemon.tmp, secret) > 0
    finally:
        reader.end()
    deadline = time.monotonic() + 10
    while vectors_in_folder(daemon.tmp, secret) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert vectors_in_folder(daemon.tmp, secret) == 0, "a removed vector is still on disk"
    deadline = time.monotonic() + 5
    while "pending erasure of 'ls-3005' complete" not in daemon.output():
        assert time.monotonic() < deadline, daemon.output()
        time.sleep(0.1)
    assert daemon.conn.request("remove", name="ls-3331")["erasure"] == "complete"


def test_a_store_of_another_model_stops_the_daemon_unless_allowed_empty(tmp_path: Path) -> None:
    """Issue 9: a daemon whose store holds another model's voiceprints would run with
    nobody enrolled and one log line; it refuses to start, naming --allow-empty."""
    import subprocess

    from vggvox.store import ModelId, VoiceprintStore

    store = VoiceprintStore(tmp_path / "voiceprints.db")
    vector = np.ones((1, 192), dtype=np.float32) / np.sqrt(192)
    store.enroll("alice", vector, ModelId("other-model@1.0", "0" * 64), ["a.wav"], [4.0])
    d = DaemonProcess(tmp_path)
    refused = subprocess.run(d.argv, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 1, refused.stdout[-2000:]
    assert "other-model@1.0" in refused.stdout and "--allow-empty" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    d.argv.append("--allow-empty")
    d.start()
    try:
        assert d.conn.request("status")["speakers"] == 0
        assert "running with nobody enrolled (--allow-empty)" in d.output()
        assert [s["name"] for s in d.conn.request("list")["speakers"]] == ["alice"], "kept"
    finally:
        d.stop()
