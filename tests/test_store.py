"""The voiceprint store, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vggvox.embedder import l2_normalize
from vggvox.errors import ModelMismatchError, StoreError
from vggvox.store import VoiceprintStore


def emb(n: int, seed: int, dim: int = 8) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)))


def test_enroll_list_remove(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    g0 = store.generation()
    info = store.enroll("alice", emb(2, 1), "m@1", ["a.wav", "b.wav"], [2.0, 3.5])
    assert (info.name, info.embeddings, info.seconds, info.model) == ("alice", 2, 5.5, "m@1")
    store.enroll("bob", emb(1, 2), "m@1", ["c.wav"], [4.0])
    store.enroll("alice", emb(1, 3), "m@1", ["d.wav"], [1.0])  # adds to alice
    assert [(s.name, s.embeddings) for s in store.speakers()] == [("alice", 3), ("bob", 1)]
    names, prints = store.voiceprints("m@1")
    assert names == ["alice", "bob"] and prints.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(prints, axis=1), 1.0, atol=1e-6)
    assert store.generation() == g0 + 3
    assert store.remove("alice") and not store.remove("alice")
    assert [s.name for s in store.speakers()] == ["bob"]
    # A second handle on the same file sees everything (it is durable).
    assert [s.name for s in VoiceprintStore(tmp_path / "vp.db").speakers()] == ["bob"]


def test_replace(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    store.enroll("alice", emb(3, 1), "m@1", ["a", "b", "c"], [1, 1, 1])
    info = store.enroll("alice", emb(1, 2), "m@1", ["d"], [2], replace=True)
    assert info.embeddings == 1


def test_models_never_mix(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    store.enroll("alice", emb(1, 1), "campplus@1", ["a"], [3])
    with pytest.raises(ModelMismatchError, match="holds voiceprints of model campplus@1"):
        store.enroll("bob", emb(1, 2, dim=4), "ge2e@1", ["b"], [3])
    with pytest.raises(ModelMismatchError, match="cannot be scored with ge2e@1"):
        store.voiceprints("ge2e@1")
    assert [s.name for s in store.speakers()] == ["alice"]


def test_failed_enrollment_leaves_no_trace(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    store.enroll("alice", emb(1, 1), "m@1", ["a"], [3])
    bad = emb(2, 2)
    bad[1, 0] = np.nan
    with pytest.raises(StoreError, match="non-finite"):
        store.enroll("bob", bad, "m@1", ["b", "c"], [1, 1])
    with pytest.raises(StoreError, match="one source and one duration"):
        store.enroll("bob", emb(2, 2), "m@1", ["b"], [1, 1])
    assert [s.name for s in store.speakers()] == ["alice"]


def test_transaction_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fail between the speaker row and the embeddings: neither may remain.
    store = VoiceprintStore(tmp_path / "vp.db")

    def boom(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(VoiceprintStore, "_bump", staticmethod(boom))
    with pytest.raises(StoreError, match="simulated"):
        store.enroll("carol", emb(1, 1), "m@1", ["a"], [3])
    monkeypatch.undo()
    assert store.speakers() == []
    with sqlite3.connect(tmp_path / "vp.db") as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0


@pytest.mark.parametrize("name", ["", "  ", " alice", "a\nb", "x" * 200, 42])
def test_bad_names(tmp_path: Path, name: object) -> None:
    store = VoiceprintStore(tmp_path / "vp.db")
    with pytest.raises(StoreError, match="speaker name"):
        store.enroll(name, emb(1, 1), "m@1", ["a"], [3])  # type: ignore[arg-type]


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "vp.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="vp.db"):
        VoiceprintStore(p)


def test_the_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 8: under umask 022 the store's folder is 0700 and its files 0600."""
    import os

    old = os.umask(0o022)
    try:
        store = VoiceprintStore(tmp_path / "new" / "voiceprints.db")
        rng = np.random.default_rng(0)
        store.enroll("alice", l2_normalize(rng.normal(size=(2, 8))), "m@1", ["a", "b"], [3, 3])
        with sqlite3.connect(store.path) as reader:  # -wal and -shm exist while it is open
            reader.execute("SELECT COUNT(*) FROM speakers").fetchone()
            files = sorted(store.path.parent.iterdir())
            assert {f.name for f in files} == {"voiceprints.db", "voiceprints.db-wal",
                                               "voiceprints.db-shm"}
            assert all(f.stat().st_mode & 0o777 == 0o600 for f in files), \
                [(f.name, oct(f.stat().st_mode)) for f in files]
        assert store.path.parent.stat().st_mode & 0o777 == 0o700
        opened = tmp_path / "open.db"
        opened.touch(mode=0o644)
        opened.chmod(0o644)
        VoiceprintStore(opened)
        assert opened.stat().st_mode & 0o777 == 0o600, "an existing store is tightened"
    finally:
        os.umask(old)


def test_a_removed_voiceprint_is_left_in_no_file(tmp_path: Path) -> None:
    """Issue 8: after remove, the removed float32 vectors are in no file of the folder."""
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    rng = np.random.default_rng(1)
    secret = l2_normalize(rng.normal(size=(3, 192))).astype(np.float32)
    store.enroll("bob", secret, "m@1", ["a", "b", "c"], [3, 3, 3])
    store.enroll("carol", l2_normalize(rng.normal(size=(1, 192))), "m@1", ["d"], [3])

    def found() -> int:
        blobs = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
        return sum(row.tobytes() in blobs for row in secret)

    assert found() == 3
    assert store.remove("bob")
    assert found() == 0, "a removed vector is still in the store's files"
    assert [s.name for s in store.speakers()] == ["carol"]


def test_a_deleted_store_is_recreated_and_said_so(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Issue 8: deleting the store under a running daemon used to fail every request
    with "no such table"; now an ERROR is logged and an empty store takes its place."""
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    store.enroll("alice", l2_normalize(np.ones((1, 8))), "m@1", ["a"], [3])
    for f in tmp_path.iterdir():
        f.unlink()
    with caplog.at_level("ERROR"):
        assert store.speakers() == []
    assert "the voiceprint store was deleted" in caplog.text
    store.enroll("bob", l2_normalize(np.ones((1, 8))), "m@1", ["b"], [3])
    assert [s.name for s in store.speakers()] == ["bob"]


def test_names_are_one_unicode_form(tmp_path: Path) -> None:
    """Issue 8: the NFC and NFD spellings of a name are the same speaker."""
    import unicodedata

    store = VoiceprintStore(tmp_path / "voiceprints.db")
    nfc, nfd = unicodedata.normalize("NFC", "José"), unicodedata.normalize("NFD", "José")
    assert nfc != nfd
    store.enroll(nfc, l2_normalize(np.ones((1, 8))), "m@1", ["a"], [3])
    store.enroll(nfd, l2_normalize(np.ones((1, 8))), "m@1", ["b"], [3])
    assert [(s.name, s.embeddings) for s in store.speakers()] == [(nfc, 2)]
    assert store.remove(nfd) and store.speakers() == []
