"""The voiceprint store, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from store_reader import Reader, vectors_in_folder

from vggvox.embedder import l2_normalize
from vggvox.errors import ModelMismatchError, StoreError
from vggvox.store import VoiceprintStore
from vggvox.storefile import SqliteTx


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

    def boom(tx: SqliteTx, names: object = None) -> int:
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(SqliteTx, "bump_generation", boom)
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


# -- issue 8, section 5: look-alike names, the model file's hash, erasure with a reader --


@pytest.mark.parametrize("twin", ["\u0430lice", "ALICE", "Alice", "a\u217cice"])
def test_a_name_confusable_with_an_enrolled_one_is_refused_unless_forced(
        tmp_path: Path, twin: str, caplog: pytest.LogCaptureFixture) -> None:
    """Cyrillic "аlice", case variants, Roman numeral "ⅼ" (U+217C): each looks like "alice"
    (UTS #39 skeletons, case-folded); refused naming both, stored when forced, logged."""
    from vggvox.errors import ConfusableNameError

    store = VoiceprintStore(tmp_path / "vp.db")
    store.enroll("alice", emb(1, 1), "m@1", ["a"], [3])
    with pytest.raises(ConfusableNameError, match="looks like the enrolled speaker 'alice'") as e:
        store.enroll(twin, emb(1, 2), "m@1", ["b"], [3])
    assert repr(twin) in str(e.value) and "\n" not in str(e.value)
    if not twin.isascii():
        assert "U+" in str(e.value), "the odd character is named: look-alikes print alike"
    assert [s.name for s in store.speakers()] == ["alice"]
    store.enroll("alice", emb(1, 3), "m@1", ["c"], [3])  # the same name is no look-alike
    store.enroll("bob", emb(1, 4), "m@1", ["d"], [3])
    with caplog.at_level("WARNING", logger="vggvox.store"):
        store.enroll(twin, emb(1, 2), "m@1", ["b"], [3], force=True)
    assert "looks like the enrolled speaker 'alice': forced" in caplog.text
    assert sorted(s.name for s in store.speakers()) == sorted(["alice", "bob", twin])


def test_names_that_only_look_different_in_a_font_are_not_confusable(tmp_path: Path) -> None:
    from vggvox.names import look_alike

    assert look_alike("alice", ["alicia", "bob", "al ice", "José"]) is None
    assert look_alike("rnary", ["mary"]) == "mary"  # "rn" reads as "m" (UTS #39)


def test_enroll_many_is_one_transaction(tmp_path: Path) -> None:
    """batch-offline enrolls its whole list at once: one generation, and all or none."""
    from vggvox.errors import ConfusableNameError
    from vggvox.store import NewPrints

    store = VoiceprintStore(tmp_path / "vp.db")
    store.enroll("alice", emb(1, 1), "m@1", ["a"], [3])
    g0 = store.generation()
    store.enroll_many([NewPrints(f"s{i}", emb(2, 10 + i), ["x", "y"], [1.0, 2.0])
                       for i in range(300)] + [NewPrints("alice", emb(1, 2), ["b"], [4.0])],
                      "m@1", replace=True)
    assert store.generation() == g0 + 1
    infos = {s.name: s for s in store.speakers()}
    assert len(infos) == 301 and infos["s299"].embeddings == 2 and infos["s0"].seconds == 3.0
    assert infos["alice"].embeddings == 1 and infos["alice"].seconds == 4.0  # replaced
    before = [(s.name, s.embeddings) for s in store.speakers()]
    # A look-alike of a name in the same batch, or a bad row anywhere: nothing is written.
    for batch, error in (
            ([NewPrints("carol", emb(1, 3), ["c"], [1.0]),
              NewPrints("CAROL", emb(1, 4), ["d"], [1.0])], ConfusableNameError),
            ([NewPrints("dave", emb(1, 5), ["e"], [1.0]),
              NewPrints("erin", np.full((1, 8), np.nan), ["f"], [1.0])], StoreError),
            ([NewPrints("frank", emb(1, 6), ["g"], [1.0]),
              NewPrints("s1\n", emb(1, 7), ["h"], [1.0])], StoreError)):
        with pytest.raises(error):
            store.enroll_many(batch, "m@1")
        assert [(s.name, s.embeddings) for s in store.speakers()] == before
    assert store.generation() == g0 + 1


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (name TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL,
                       updated REAL NOT NULL);
CREATE TABLE embeddings (id INTEGER PRIMARY KEY,
    speaker TEXT NOT NULL REFERENCES speakers(name) ON DELETE CASCADE, vector BLOB NOT NULL,
    dim INTEGER NOT NULL, source TEXT NOT NULL, seconds REAL NOT NULL);
INSERT INTO meta VALUES ('schema', '1'), ('generation', '7');
"""


def schema_1_store(path: Path, tag: str, prints: dict[str, np.ndarray]) -> None:
    """A store as the schema-1 code wrote it: speakers tied to a model by its tag alone."""
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
        for name, vectors in prints.items():
            db.execute("INSERT INTO speakers VALUES (?, ?, 1.0, 2.0)", (name, tag))
            db.executemany("INSERT INTO embeddings (speaker, vector, dim, source, seconds) "
                           "VALUES (?, ?, ?, 'a.wav', 3.0)",
                           [(name, v.tobytes(), len(v)) for v in vectors])


def test_a_schema_1_store_is_migrated_and_bound_to_the_model_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 8: speakers are tied to the model file's sha256. A schema-1 store (tags only)
    loses nothing: it is migrated, and its rows of the current tag adopted to the current
    file's hash (INFO); then another file under the same tag is refused in one line."""
    from vggvox.modelcard import load_card, resolve_card
    from vggvox.store import ModelId

    card = load_card(resolve_card("campplus"))
    old = {"alice": emb(2, 1, dim=192), "bob": emb(1, 2, dim=192)}
    schema_1_store(tmp_path / "vp.db", card.tag, old)
    with caplog.at_level("INFO"):
        store = VoiceprintStore(tmp_path / "vp.db")
        assert "schema 1 migrated to 2 (2 speakers kept" in caplog.text
        names, prints = store.voiceprints(ModelId.of(card))
    assert f"2 speaker(s) enrolled with {card.tag} bound to its model file, sha256 " \
           f"{card.sha256}" in caplog.text
    assert names == ["alice", "bob"] and prints.shape == (2, 192) and store.generation() == 7
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "2"
        assert {r[0] for r in db.execute("SELECT model_sha256 FROM speakers")} == {card.sha256}
        kept = db.execute("SELECT vector FROM embeddings ORDER BY id").fetchall()
    assert [r[0] for r in kept] == [v.tobytes() for vs in old.values() for v in vs]
    assert [(s.name, s.model, s.embeddings) for s in store.speakers()] == \
        [("alice", card.tag, 2), ("bob", card.tag, 1)]  # the readable tag, as before

    other = ModelId(card.tag, "0" * 64)  # same name and version, another file
    for refused in (lambda: store.voiceprints(other),
                    lambda: store.enroll("carol", emb(1, 3, dim=192), other, ["c"], [3]),
                    lambda: store.enroll("alice", emb(1, 3, dim=192), other, ["c"], [3])):
        with pytest.raises(ModelMismatchError, match=f"model {card.tag} \\(file sha256 "
                                                     f"{card.sha256[:12]}\\)") as e:
            refused()
        assert "000000000000" in str(e.value) and "\n" not in str(e.value)
    assert [s.embeddings for s in store.speakers()] == [2, 1]
    VoiceprintStore(tmp_path / "vp.db")  # reopening a schema-2 store migrates nothing
    store.enroll("carol", emb(1, 3, dim=192), card, ["c"], [3])  # a card binds by its hash
    assert store.voiceprint_of("carol", ModelId.of(card)) is not None


def test_rows_written_by_tag_alone_take_the_stores_model_file(tmp_path: Path) -> None:
    """A caller that names the model by its tag (as before) adds rows bound to the file
    the store already holds, so a hash-aware reader finds no stranger among them."""
    from vggvox.store import ModelId

    store = VoiceprintStore(tmp_path / "vp.db")
    model = ModelId("m@1", "a" * 64)
    store.enroll("alice", emb(1, 1), model, ["a"], [3])
    store.enroll("bob", emb(1, 2), "m@1", ["b"], [3])
    assert store.voiceprints(model)[0] == ["alice", "bob"]
    with pytest.raises(ModelMismatchError, match="holds voiceprints of model m@1"):
        store.voiceprints(ModelId("m@1", "b" * 64))


def test_erasure_with_a_concurrent_reader_completes_when_the_reader_ends(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8: while another process holds a read transaction the checkpoint cannot
    drop the removed pages; the store says the erasure is pending, and retry_erasure
    completes it (INFO) once the reader is gone. Then the vectors are in no file."""
    import time

    import vggvox.erasure

    store = VoiceprintStore(tmp_path / "voiceprints.db")
    secret = emb(3, 1, dim=192)
    store.enroll("bob", secret, "m@1", ["a", "b", "c"], [3, 3, 3])
    store.enroll("carol", emb(1, 2, dim=192), "m@1", ["d"], [3])
    assert store.checkpoint() and not store.erasure_pending
    monkeypatch.setattr(vggvox.erasure, "RETRY_S", 0.0)  # no waiting between retries
    reader = Reader(store.path)
    try:
        assert reader.rows == 4
        t0 = time.monotonic()
        assert store.remove("bob")
        assert time.monotonic() - t0 < 2.0, "a reader must not hold up the removal"
        assert store.erasure_pending
        assert vectors_in_folder(tmp_path, secret) == 3, "the reader's snapshot keeps them"
        assert not store.retry_erasure() and store.erasure_pending
    finally:
        reader.end()
    with caplog.at_level("INFO", logger="vggvox.erasure"):
        assert store.retry_erasure()
    assert "pending erasure of 'bob' complete" in caplog.text
    assert not store.erasure_pending
    assert vectors_in_folder(tmp_path, secret) == 0, "a removed vector is still on disk"
    assert [s.name for s in store.speakers()] == ["carol"]


def test_erasure_without_a_reader_is_complete_at_once(tmp_path: Path) -> None:
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    secret = emb(2, 1, dim=192)
    store.enroll("bob", secret, "m@1", ["a", "b"], [3, 3])
    assert store.remove("bob") and not store.erasure_pending
    assert vectors_in_folder(tmp_path, secret) == 0


def test_retry_erasure_costs_nothing_when_none_is_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's run loop calls it ten times a second: no file is touched."""
    import time

    store = VoiceprintStore(tmp_path / "voiceprints.db")

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("retry_erasure opened the store with nothing pending")

    monkeypatch.setattr(VoiceprintStore, "_connect", no_io)
    t0 = time.perf_counter()
    assert all(store.retry_erasure() for _ in range(10_000))
    assert time.perf_counter() - t0 < 0.5
