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
