"""What a follower of a large store reads instead of every speaker (issue 25, the
propagation target at 100,000 speakers): the change log on both backends (what each
write names, what it cannot say, pruning, the schema migration that adds it), the
voiceprints of a few speakers in one read, ``VoiceprintSet.update`` (a patched
snapshot equal to a rebuilt one, readers seeing a whole one), and the voiceprints
stacked at once equal, bit for bit, to one speaker at a time."""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggvox import storechanges
from vggvox.scoring import voiceprint
from vggvox.storeapi import Store
from vggvox.storebinding import ModelId
from vggvox.storehealth import sort_rows
from vggvox.storeopen import open_store
from vggvox.storerows import NewPrints, _sound, stacked, voiceprints
from vggvox.voiceprints import VoiceprintSet

M = ModelId("m@1", "a" * 64, 8)


def emb(n: int, seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def written(*names: str, removals: bool = False) -> storechanges.Changes:
    return storechanges.Changes(frozenset(names), removals)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = open_store(f"sqlite:{tmp_path / 'vp.db'}")
    else:
        s = open_store(request.getfixturevalue("pg_server").new_database())
    try:
        yield s
    finally:
        s.close()


def test_the_change_log_names_what_each_write_touched(store: Store) -> None:
    g0 = store.generation()
    store.enroll_many([NewPrints("alice", emb(1, 1), ["a"], [1.0]),
                       NewPrints("bob", emb(1, 2), ["b"], [1.0])], M)
    g1 = store.generation()
    assert store.changed_since(g0, g1) == written("alice", "bob")
    store.enroll("bob", emb(1, 3), M, ["b2"], [1.0], replace=True)
    assert store.remove("alice")
    g2 = store.generation()
    # A removal is logged without the name, and the name's earlier rows lose it too.
    assert store.changed_since(g1, g2) == written("bob", removals=True)
    assert store.changed_since(g1 + 1, g2) == written(removals=True)
    assert store.changed_since(g0, g1) == written("bob", removals=True)
    assert store.changed_since(g2, g2) == written()
    assert store.changed_since(g2 + 5, g2) is None, "a store that went back: read whole"
    # A write that does not say which speakers (a store copied in) ...
    with store.transaction() as tx:
        tx.bump_generation()
    assert store.changed_since(g2, store.generation()) is None
    # ... one of many speakers at once, and one by a writer keeping no log (a gap).
    g3 = store.generation()
    store.enroll_many([NewPrints(f"s{i:03d}", emb(1, 10 + i), ["x"], [1.0])
                       for i in range(storechanges.MOST_NAMED + 1)], M, force=True)
    assert store.changed_since(g3, store.generation()) is None
    g4 = store.generation()
    with store.transaction() as tx:
        tx.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                   "WHERE key = 'generation'")
    assert store.changed_since(g4, store.generation()) is None
    store.enroll("carol", emb(1, 4), M, ["c"], [1.0])
    g5 = store.generation()
    assert store.changed_since(g5 - 1, g5) == written("carol"), "after the gap, it answers"


def test_the_log_is_pruned(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storechanges, "KEPT", 20)
    for i in range(80):
        store.enroll(f"p{i:02d}", emb(1, i), M, ["x"], [1.0], force=True)
    g = store.generation()
    with store.transaction() as tx:
        kept = tx.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    assert 20 <= kept <= 20 + 16
    assert store.changed_since(0, g) is None, "pruned: read whole"
    assert store.changed_since(g - 20, g) == written(*(f"p{i:02d}" for i in range(60, 80)))


def test_a_few_speakers_voiceprints_in_one_read(store: Store,
                                                caplog: pytest.LogCaptureFixture) -> None:
    store.enroll("alice", emb(3, 1), M, ["a"] * 3, [1.0] * 3)
    store.enroll("bob", emb(1, 2), M, ["b"], [1.0])
    store.enroll("carol", emb(2, 3), M, ["c"] * 2, [1.0] * 2)
    names, whole = store.voiceprints(M)
    found, prints = store.voiceprints_of(["carol", "nobody", "alice"], M)
    assert found == ["alice", "carol"]
    np.testing.assert_array_equal(prints, whole[[names.index("alice"), names.index("carol")]])
    with store.transaction() as tx:  # a damaged row: left out, and said
        tx.execute("UPDATE embeddings SET dim = 3 WHERE speaker = 'bob'")
    with caplog.at_level(logging.ERROR):
        assert store.voiceprints_of(["bob", "carol"], M)[0] == ["carol"]
    assert "'bob'" in caplog.text


def test_postgresql_migration_3_adds_the_log(pg_server: Any) -> None:
    import psycopg

    from vggvox.store_pgschema import SCHEMA_VERSION, migrate

    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn, "t", upto=2) == 0
        conn.execute("UPDATE meta SET value = '41' WHERE key = 'generation'")
        assert conn.execute("SELECT to_regclass('changes')").fetchone() == (None,)
    store = open_store(url)  # an older vggvox's store: migrated on open
    try:
        assert SCHEMA_VERSION == 3 and store.generation() == 41
        assert store.changed_since(40, 41) is None, "written before the log: no answer"
        store.enroll("alice", emb(1, 1), M, ["a"], [1.0])
        assert store.changed_since(41, 42) == written("alice")
    finally:
        store.close()


def test_a_sqlite_store_of_the_previous_version_gets_the_log(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "vp.db"
    open_store(path).enroll("alice", emb(1, 1), M, ["a"], [1.0])
    with sqlite3.connect(path) as db:  # as the previous version left it: no log
        db.execute("DROP TABLE changes")
    store = open_store(path)
    assert store.changed_since(0, 1) is None
    store.enroll("bob", emb(1, 2), M, ["b"], [1.0])
    assert store.changed_since(1, 2) == written("bob")


def snapshot_of(prints: dict[str, np.ndarray], dim: int) -> VoiceprintSet:
    s = VoiceprintSet(dim)
    s._dict = dict(prints)
    s._publish()  # the whole rebuild, as add() does it
    return s


def test_a_patched_snapshot_equals_a_rebuilt_one() -> None:
    dim, rng = 16, np.random.default_rng(7)
    names = sorted({f"n{int(x)}" for x in rng.integers(0, 10**6, 300)})
    prints = dict(zip(names, emb(len(names), 1, dim), strict=True))
    vps = snapshot_of(prints, dim)
    old = vps.snapshot()
    old_matrix = old.matrix.copy()
    changed = {names[0]: emb(1, 2, dim)[0], names[150]: emb(1, 3, dim)[0],
               "a-first": emb(1, 4, dim)[0], "n5000000": emb(1, 5, dim)[0],
               "zz-last": emb(1, 6, dim)[0]}
    gone = [names[-1], names[7], names[8], "never-there"]
    vps.update(changed, gone)
    want = {**prints, **changed}
    for n in gone:
        want.pop(n, None)
    rebuilt = snapshot_of(want, dim).snapshot()
    new = vps.snapshot()
    assert new.names == rebuilt.names and len(new) == len(names) + 3 - 3
    np.testing.assert_array_equal(new.matrix, rebuilt.matrix)
    assert old.names == tuple(names), "a reader's old snapshot is untouched"
    np.testing.assert_array_equal(old.matrix, old_matrix)
    vps.update({}, ["nobody"])
    assert vps.snapshot() is new, "nothing to do: the same snapshot"
    assert dict(vps._prints).keys() == want.keys(), "add() and pickling see the patch"
    copy = pickle.loads(pickle.dumps(vps))
    assert copy.names == new.names
    np.testing.assert_array_equal(copy.snapshot().matrix, new.matrix)
    with pytest.raises(ValueError, match="size 3"):
        vps.update({"x": np.ones(3, dtype=np.float32)})


def test_readers_see_a_whole_snapshot_while_it_is_patched() -> None:
    dim = 4
    vps = snapshot_of({f"s{i:04d}": np.full(dim, i, dtype=np.float32) for i in range(500)},
                      dim)
    stop, bad = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            snap = vps.snapshot()
            if len(snap.names) != snap.matrix.shape[0] or any(
                    snap.matrix[i, 0] != int(snap.names[i][1:])
                    for i in range(0, len(snap.names), 7)):
                bad.append(snap)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(500, 700):
            vps.update({f"s{i:04d}": np.full(dim, i, dtype=np.float32)},
                       [f"s{i - 500:04d}"])
    finally:
        stop.set()
        t.join(timeout=10)
    assert not bad and len(vps) == 500 and vps.names[0] == "s0200"


def test_stacked_at_once_equals_one_speaker_at_a_time() -> None:
    """Bit for bit: the same float32 operations in the same order per speaker."""
    rng = np.random.default_rng(3)
    dim = 192
    counts = rng.integers(1, 7, 400)
    grouped = {f"sp{i:04d}": list(rng.standard_normal((int(c), dim)).astype(np.float32)
                                  * rng.uniform(0.1, 10))
               for i, c in enumerate(counts)}
    names, matrix = stacked(grouped)
    for i, n in enumerate(names):
        np.testing.assert_array_equal(matrix[i], voiceprint(np.stack(grouped[n])))
    rows = np.concatenate([np.stack(grouped[n]) for n in names])
    starts = np.concatenate(([0], np.cumsum([len(grouped[n]) for n in names])[:-1]))
    np.testing.assert_array_equal(voiceprints(rows, starts), matrix)


def test_sound_rows_take_the_fast_path_and_damaged_ones_the_careful_one() -> None:
    rng = np.random.default_rng(4)
    rows: list[tuple[int, str, object, object]] = [(i, f"s{i // 3:03d}", v.tobytes(), 8)
            for i, v in enumerate(rng.standard_normal((90, 8)).astype(np.float32))]
    fast = _sound(rows, 8)
    assert fast is not None
    grouped, damaged = sort_rows("t", rows, 8)
    names, matrix = stacked(grouped)
    assert fast[0] == names and not damaged
    np.testing.assert_array_equal(fast[1], matrix)
    rows[4] = (4, rows[4][1], np.zeros(8, dtype=np.float32).tobytes(), 8)
    assert _sound(rows, 8) is None, "a zero vector: sort_rows says which speaker"
    assert _sound([*rows[:3], (99, "s000", b"abc", 8)], 8) is None


def test_the_searcher_follows_a_patch_without_comparing_every_row() -> None:
    """After ``update`` the index is kept, and derived from the patch's own row map: the
    same searcher as comparing every row gives (two patches between two searches too)."""
    from vggvox.search import SearchSettings

    dim = 16
    names = [f"v{i:05d}" for i in range(2100)]
    m = emb(len(names), 9, dim)
    vps = VoiceprintSet(dim, search=SearchSettings(index_above=2000, build_on_search=False))
    vps.load(_Fixed(names[:2050], m[:2050]))  # type: ignore[arg-type]
    vps.prepare_search()
    built = vps.searcher()
    vps.update({names[3]: m[2060], names[2080]: m[2080]}, [names[10]])
    vps.update({names[2090]: m[2090]}, [names[11]])
    snap = vps.snapshot()
    assert snap.rows_in is not None and snap.rows_in[0] == vps._searched.serial
    now = vps.searcher()
    full = built.derive(snap.names, snap.matrix)
    assert now._index is built._index and now.ready
    np.testing.assert_array_equal(now._id_rows, full._id_rows)
    assert sorted(now._fresh.tolist()) == sorted(full._fresh.tolist())
    q = m[[3, 2060, 2080, 500]]
    assert now.search(q, 3) == full.search(q, 3)
    assert now.search(m[10], 1)[0][0].name != names[10]


class _Fixed:
    """A store that answers ``voiceprints`` alone."""

    def __init__(self, names: list[str], matrix: np.ndarray) -> None:
        self.names, self.matrix = names, matrix

    def voiceprints(self, model: object) -> tuple[list[str], np.ndarray]:
        return list(self.names), self.matrix


def test_the_names_kept_between_enrollments_follow_the_table(store: Store) -> None:
    """Each enrollment's look-alike check sees the names in the table now: another
    writer's additions and removals, and not the names of a transaction rolled back."""
    from vggvox.errors import ConfusableNameError

    theirs = open_store(store.location if store.location.startswith("postgresql")
                        else f"sqlite:{store.location}")
    try:
        store.enroll("alice", emb(1, 1), M, ["a"], [1.0])
        theirs.enroll("bob", emb(1, 2), M, ["b"], [1.0])
        with pytest.raises(ConfusableNameError, match="bob"):
            store.enroll("BOB", emb(1, 3), M, ["b"], [1.0])
        theirs.remove("alice")
        store.enroll("ALICE", emb(1, 4), M, ["a"], [1.0])  # alice is gone: no look-alike
        with pytest.raises(ConfusableNameError):
            store.enroll_many([NewPrints("carol", emb(1, 5), ["c"], [1.0]),
                               NewPrints("Bob", emb(1, 6), ["b"], [1.0])], M)
        store.enroll("CAROL", emb(1, 7), M, ["c"], [1.0])  # carol was rolled back
        store.enroll("ALICE", emb(1, 8), M, ["a"], [1.0], replace=True)
        theirs.remove("ALICE")
        store.enroll("alice", emb(1, 9), M, ["a"], [1.0])  # the replaced name left too
        assert sorted(s.name for s in store.speakers()) == ["CAROL", "alice", "bob"]
    finally:
        theirs.close()


def test_patches_from_and_to_an_empty_set() -> None:
    vps = VoiceprintSet(8)
    vps.searcher()
    vps.update({"a": emb(1, 1)[0]})
    vps.update({}, ["a"])
    vps.update({"b": emb(1, 2)[0], "c": emb(1, 3)[0]})
    assert vps.names == ("b", "c") and [m.name for m in vps.search(emb(1, 3)[0], 1)] == ["c"]


def test_a_follower_drops_a_removed_speaker_also_when_it_missed_the_removal(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """A removal names nobody in the log (``storechanges.REMOVED``): a follower of a large
    set compares its names with the store's and drops the speaker, within a second while
    it follows (PostgreSQL: NOTIFY; SQLite: its poll), and at its next look after it was
    away (the notices missed, the removed name's earlier rows without it)."""
    import time

    from vggvoxd.storefollow import POLL_S, WAIT_S, StoreFollower

    theirs = open_store(store.location if store.location.startswith("postgresql")
                        else f"sqlite:{store.location}")
    try:
        theirs.enroll_many([NewPrints(f"s{i}", emb(1, i), ["x"], [1.0]) for i in range(6)], M)
        f = StoreFollower(store, VoiceprintSet(8, "m@1"), M, incremental_above=4)
        f.check_model(allow_empty=False)
        f.start()
        try:
            t0 = time.monotonic()
            theirs.remove("s3")
            bound = 1.0 if store.location.startswith("postgresql") else POLL_S + WAIT_S + 0.5
            while "s3" in f.voiceprints:
                assert time.monotonic() - t0 < bound, "not dropped in time"
                time.sleep(0.01)
        finally:
            f.stop()
        theirs.enroll("late", emb(1, 10), M, ["x"], [1.0])  # the follower is away
        theirs.enroll("s1", emb(1, 11), M, ["y"], [1.0], force=True)
        assert theirs.remove("late") and theirs.remove("s0")
        with caplog.at_level(logging.INFO, logger="vggvoxd.storefollow"):
            assert f.refresh()
        assert "1 changed, 1 gone" in caplog.text, "s1 read again, s0 dropped, late never held"
        whole = VoiceprintSet(8, "m@1")
        whole.load(store, M)
        assert f.voiceprints.names == whole.names == ("s1", "s2", "s4", "s5")
        np.testing.assert_array_equal(f.voiceprints.snapshot().matrix, whole.snapshot().matrix)
    finally:
        theirs.close()
