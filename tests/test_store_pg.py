"""The store's behaviours on both backends (a SQLite file, and a real PostgreSQL 15
from Debian's packages: one server for the module, one fresh database per test),
and what only PostgreSQL has: VACUUM after a removal, its schema migrations, an
outage in the middle of an enrollment, LISTEN/NOTIFY, and store migrate."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vggvox import roomstore, storechanges, storerows
from vggvox.calibration import AcceptRule, Calibration
from vggvox.errors import (
    ConfigError,
    ConfusableNameError,
    ModelMismatchError,
    StoreError,
    StoreUnavailable,
)
from vggvox.provisional import HeardVoice, ProvisionalVoices
from vggvox.rooms import Evidence
from vggvox.storeapi import Store
from vggvox.storebinding import ModelId
from vggvox.storeopen import open_store
from vggvox.storerows import NewPrints

ROOT = Path(__file__).resolve().parent.parent
CAL = Calibration.load(ROOT / "weights/vggvox_weights/campplus-int8.calibration.yaml")
M1 = ModelId("m@1", "a" * 64, 8)
M1_OTHER_FILE = ModelId("m@1", "b" * 64, 8)
RAW = AcceptRule(threshold=0.9)


def emb(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def pg(pg_server: Any) -> Any:
    """The module's server, with ``db_url`` naming a fresh, empty database."""
    pg_server.db_url = pg_server.new_database()
    pg_server.db_name = pg_server.db_url.rsplit("/", 1)[1]
    return pg_server


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'vp.db'}"
    return str(request.getfixturevalue("pg").db_url)


def psql(pg: Any, sql: str) -> str:
    """Debian's psql on the test's own database (not our code)."""
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", str(pg.bin / "psql"), "-h", "127.0.0.1", "-p",
         str(pg.port), "-U", "vggvox", "-d", pg.db_name, "-At", "-v", "ON_ERROR_STOP=1",
         "-c", sql], capture_output=True, text=True, timeout=60, cwd=pg.root)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- the same behaviours on both backends ----------------------------------------------------

def test_enroll_list_bind_and_refuse_another_model_file(where: str) -> None:
    store = open_store(where)
    g0 = store.generation()
    store.enroll("alice", emb(2, 1), M1, ["a", "b"], [2.0, 3.5])
    store.enroll("bob", emb(1, 2), M1, ["c"], [4.0])
    assert [(s.name, s.embeddings, s.seconds) for s in store.speakers()] == [
        ("alice", 2, 5.5), ("bob", 1, 4.0)]
    assert store.generation() == g0 + 2 and store.model() == "m@1"
    names, prints = store.voiceprints(M1)
    assert names == ["alice", "bob"] and prints.shape == (2, 8)
    with pytest.raises(ModelMismatchError, match="sha256 aaaaaaaaaaaa"):
        store.enroll("carol", emb(1, 3), M1_OTHER_FILE, ["d"], [1.0])
    with pytest.raises(ModelMismatchError):
        store.voiceprints(M1_OTHER_FILE)
    assert store.voiceprint_of("bob", M1) is not None and store.voiceprint_of("x", M1) is None
    store.close()


def test_confusable_names_and_enroll_many_all_or_none(where: str) -> None:
    store = open_store(where)
    store.enroll("alice", emb(1, 1), M1, ["a"], [1.0])
    with pytest.raises(ConfusableNameError, match="looks like"):
        store.enroll("\u0430lice", emb(1, 2), M1, ["b"], [1.0])  # Cyrillic а
    batch = [NewPrints("bob", emb(1, 3), ["c"], [1.0]), NewPrints("carol", emb(1, 4), ["d"], [1.0]),
             NewPrints("ALICE", emb(1, 5), ["e"], [1.0])]
    g = store.generation()
    with pytest.raises(ConfusableNameError):
        store.enroll_many(batch, M1)
    assert [s.name for s in store.speakers()] == ["alice"] and store.generation() == g
    store.enroll_many(batch[:2], M1)
    assert [s.name for s in store.speakers()] == ["alice", "bob", "carol"]
    store.enroll_many([NewPrints("ALICE", emb(1, 5), ["e"], [1.0])], M1, force=True)
    assert len(store.speakers()) == 4
    store.close()


def test_provisional_voices_and_rooms(where: str) -> None:
    store = open_store(where)
    voices = ProvisionalVoices(store, M1)
    e = emb(3, 7)
    hv = [HeardVoice(e[i], 1, 4.0, 0.0, 4.0) for i in range(2)]
    assert voices.remember("mon.wav", hv, RAW) == ["unknown-1", "unknown-2"]
    again = ProvisionalVoices(open_store(where), M1)
    assert again.remember("tue.wav", [HeardVoice(e[1], 1, 2.0, 0, 2), HeardVoice(e[2], 1, 2.0, 0,
                                      2)], RAW) == ["unknown-2", "unknown-3"]
    two = again.get("unknown-2")
    assert two is not None and two.windows == 2 and [p.recording for p in two.places] == [
        "mon.wav", "tue.wav"]
    assert store.speakers() == [] and store.generation() == 0
    assert again.forget("unknown-1") and [v.label for v in again.list()] == ["unknown-2",
                                                                           "unknown-3"]
    assert not store.erasure_pending
    with pytest.raises(ModelMismatchError):
        ProvisionalVoices(store, M1_OTHER_FILE).match([e[0]], [4.0], RAW)
    # Rooms: kept per source, model and calibration.
    ev = Evidence()
    ev.add(np.array([1.0, 2.0, 3.0]), 4.0)
    roomstore.save(store, "kitchen", "sha-a", CAL, ev.as_dict(), 7)
    roomstore.save(store, "kitchen", "sha-a", CAL, ev.as_dict(), 8)  # replaced
    kept = roomstore.load(store, "kitchen", "sha-a", CAL)
    assert kept is not None and np.array_equal(kept[0].counts, ev.counts) and kept[1] == 8
    assert roomstore.load(store, "kitchen", "sha-b", CAL) is None  # another model: dropped
    assert roomstore.load(store, "kitchen", "sha-a", CAL) is None
    store.enroll("ann", emb(2, 8), M1, ["kitchen:live", "hall:clip0"], [3, 4])
    assert [c[0] for c in roomstore.channel_clips(store, "kitchen", 8)] == ["ann"]
    assert roomstore.last_clip(store) > 0
    store.close()


GONE = "Quintilla Vex-Erasure"
"""A removed speaker's name: distinctive, so that finding its bytes anywhere is a leak."""


def every_row(where: str, pg: Any) -> str:
    """Every row of every table of the store, as text, read around our code (SQLite: the
    sqlite3 module; PostgreSQL: Debian's psql, column statistics included)."""
    if where.startswith("sqlite:"):
        with sqlite3.connect(where.removeprefix("sqlite:")) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'")]
            assert {"changes", "provisional", "rooms"} <= set(tables)
            return repr([db.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    tables = psql(pg, "SELECT string_agg(tablename, ',') FROM pg_tables "
                      "WHERE schemaname = 'public'").split(",")
    assert {"changes", "provisional", "rooms"} <= set(tables)
    rows = psql(pg, "SELECT string_agg(query_to_xml(format('SELECT * FROM %I', tablename), "
                    "true, false, '')::text, '') FROM pg_tables WHERE schemaname = 'public'")
    # and the column statistics that ANALYZE (autovacuum's too) samples from them
    return rows + psql(pg, "SELECT string_agg(s::text, '') FROM pg_stats s "
                           "WHERE schemaname = 'public'")


def test_a_removed_speaker_is_in_no_row_of_any_table(where: str, request: Any,
                                                     tmp_path: Path) -> None:
    """Voiceprints are biometric data: after a removal (and its erasure) the name is in
    no table, the change log's included (a removal is logged without it), nor in the
    SQLite file's bytes, nor in a copy made by ``store migrate``."""
    from vggvox.storecopy import copy_store

    store = open_store(where)
    pg = request.getfixturevalue("pg") if where.startswith("postgresql") else None
    try:
        store.enroll(GONE, emb(2, 1), M1, ["kitchen:live", "a"], [1.0, 1.0])
        store.enroll_many([NewPrints(GONE, emb(1, 2), ["b"], [1.0]),
                           NewPrints("bob", emb(1, 3), ["c"], [1.0])], M1, force=True)
        store.enroll(GONE, emb(1, 4), M1, ["d"], [1.0], replace=True)
        voices = ProvisionalVoices(store, M1)
        voices.remember("mon.wav", [HeardVoice(emb(1, 5)[0], 1, 4.0, 0, 4)], RAW)
        assert voices.forget("unknown-1")
        roomstore.save(store, "kitchen", M1.sha256 or "", CAL, Evidence().as_dict(), 1)
        if pg is not None:
            psql(pg, "ANALYZE")  # as autovacuum does: the names sampled into pg_statistic
            assert GONE in psql(pg, "SELECT string_agg(s::text, '') FROM pg_stats s")
        assert GONE in every_row(where, pg), "the check sees a name where there is one"
        g = store.generation()
        assert store.remove(GONE) and not store.erasure_pending
        assert store.changed_since(g, g + 1) == storechanges.Changes(frozenset(), True)
        assert store.names() == {"bob"}
        rows = every_row(where, pg)
        assert GONE not in rows and "bob" in rows
        if pg is not None:  # and VACUUM freed the old row versions of the tables with names
            psql(pg, "CREATE EXTENSION IF NOT EXISTS pgstattuple")
            for t in ("speakers", "embeddings", "changes", "provisional"):
                assert psql(pg, f"SELECT dead_tuple_count FROM pgstattuple('{t}')") == "0", t
        else:
            assert_not_in_bytes(Path(where.removeprefix("sqlite:")))
        # store migrate copies what the store holds now: the name is in no row there either
        copied = tmp_path / "copied.db"
        assert copy_store(store, open_store(copied)).speakers == 1
        assert GONE not in every_row(f"sqlite:{copied}", None)
        assert_not_in_bytes(copied)
    finally:
        store.close()


def assert_not_in_bytes(path: Path) -> None:
    for f in (path, path.with_name(path.name + "-wal")):
        assert not f.exists() or GONE.encode() not in f.read_bytes(), f


def test_enroll_many_checks_are_linear_in_the_speakers(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's virtual machine steps for a batch of N new speakers (into a store of N):
    they grow as N, not N^2 (each new speaker re-scanned the table before)."""
    from vggvox.storefile import StoreFile

    steps = [0]
    opened = StoreFile.open

    def counting(self: StoreFile) -> sqlite3.Connection:
        db = opened(self)
        db.set_progress_handler(lambda: steps.__setitem__(0, steps[0] + 1) or 0, 100)
        return db

    def cost(n: int) -> int:
        store = open_store(tmp_path / f"{n}.db")
        rng = np.random.default_rng(n)
        vecs = rng.standard_normal((2 * n, 8)).astype(np.float32)
        first = [NewPrints(f"s{i}", vecs[i], ["x"], [1.0]) for i in range(n)]
        store.enroll_many(first, M1)
        steps[0] = 0
        store.enroll_many([NewPrints(f"t{i}", vecs[n + i], ["x"], [1.0]) for i in range(n)],
                          M1)
        return steps[0]

    monkeypatch.setattr(StoreFile, "open", counting)
    small, large = cost(250), cost(1000)
    assert large < 6 * small, (small, large)  # 4x the work: linear is 4, quadratic 16


def test_an_unsupported_scheme_is_one_line_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("mysql://host/db", "postgresql:host/db", "http://x/y"):
        with pytest.raises(StoreError, match="unsupported scheme") as e:
            open_store(url)
        assert "\n" not in str(e.value) and "postgresql://" in str(e.value)
    done = subprocess.run([sys.executable, "-m", "vggvox_client.cli", "speakers",
                           "--provisional", "--store", "mysql://host/db"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unsupported scheme 'mysql'" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


# -- PostgreSQL's own ------------------------------------------------------------------------------

def test_removal_is_vacuumed_and_pending_while_an_older_snapshot_holds_it(
        pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    import vggvox.erasure

    monkeypatch.setattr(vggvox.erasure, "RETRY_S", 0.0)
    psql(pg, "CREATE EXTENSION pgstattuple")
    dead = "SELECT dead_tuple_count FROM pgstattuple('embeddings')"
    store = open_store(pg.db_url)
    store.enroll_many([NewPrints(n, emb(3, i), ["a"] * 3, [1.0] * 3)
                       for i, n in enumerate(("alice", "bob", "carol"))], M1)
    assert store.remove("alice") and not store.erasure_pending
    assert psql(pg, "SELECT count(*) FROM embeddings WHERE speaker = 'alice'") == "0"
    assert psql(pg, dead) == "0"  # the dead rows' space is freed, not merely marked
    # A reader with an older snapshot: VACUUM cannot free bob's rows yet.
    with psycopg.connect(pg.db_url, autocommit=True) as reader:
        with reader.transaction():
            reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            reader.execute("SELECT count(*) FROM embeddings").fetchone()
            assert store.remove("bob") and store.erasure_pending
            assert psql(pg, dead) == "3" and not store.retry_erasure()
    assert store.retry_erasure() and not store.erasure_pending
    assert psql(pg, dead) == "0"
    assert psql(pg, "SELECT string_agg(name, ',') FROM speakers") == "carol"
    store.close()


def test_schema_versions_and_a_migration(pg: Any) -> None:
    import psycopg

    from vggvox.store_pgschema import SCHEMA_VERSION, migrate

    with psycopg.connect(pg.db_url, autocommit=True) as conn:
        assert migrate(conn, "t", upto=1) == 0
    assert psql(pg, "SELECT value FROM meta WHERE key = 'schema'") == "1"
    assert psql(pg, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                    "'embeddings_speaker'") == "0"
    # Two stores opened at once migrate once (advisory lock), to the latest version.
    opened: list[Store] = []
    threads = [threading.Thread(target=lambda: opened.append(open_store(pg.db_url)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(opened) == 2
    assert psql(pg, "SELECT value FROM meta WHERE key = 'schema'") == str(SCHEMA_VERSION)
    assert psql(pg, "SELECT count(*) FROM pg_indexes WHERE indexname = "
                    "'embeddings_speaker'") == "1"
    psql(pg, "UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema 99"):
        open_store(pg.db_url)
    for s in opened:
        s.close()


def test_a_server_stopped_mid_enrollment_leaves_nothing(
        pg: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(pg.db_url)
    store.enroll("alice", emb(1, 1), M1, ["a"], [1.0])
    one = storerows._enroll_one
    calls = [0]

    def stop_after_one(*args: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:
            pg.stop("immediate")  # the server dies with the transaction open
        one(*args)

    monkeypatch.setattr(storerows, "_enroll_one", stop_after_one)
    batch = [NewPrints(n, emb(2, i), ["x", "y"], [1.0, 1.0]) for i, n in
             enumerate(("bob", "carol", "dave"))]
    with pytest.raises(StoreUnavailable, match=r"^store postgresql://.* unreachable: ") as e:
        store.enroll_many(batch, M1)
    assert "\n" not in str(e.value)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.speakers()  # still down: one line again
    monkeypatch.undo()
    pg.start()
    assert [s.name for s in store.speakers()] == ["alice"]  # the same handle reconnects
    assert psql(pg, "SELECT count(*) FROM embeddings") == "1"
    # The server goes away between a removal's DELETE and its VACUUM: pending, and
    # finished by retry_erasure once it is back.
    import vggvox.erasure

    monkeypatch.setattr(vggvox.erasure, "RETRY_S", 0.0)
    psql(pg, "CREATE EXTENSION pgstattuple")
    vacuum = store.erasure._vacuum  # type: ignore[attr-defined]

    def stop_first() -> bool:
        pg.stop("immediate")
        return bool(vacuum())

    monkeypatch.setattr(store.erasure, "_vacuum", stop_first)  # type: ignore[attr-defined]
    assert store.remove("alice") and store.erasure_pending
    monkeypatch.setattr(store.erasure, "_vacuum", vacuum)  # type: ignore[attr-defined]
    assert not store.retry_erasure()  # still down
    pg.start()
    assert store.retry_erasure() and not store.erasure_pending
    assert psql(pg, "SELECT count(*) FROM speakers") == "0"
    assert psql(pg, "SELECT dead_tuple_count FROM pgstattuple('embeddings')") == "0"
    store.close()


def test_a_write_on_one_store_wakes_the_other(pg: Any) -> None:
    a, b = open_store(pg.db_url), open_store(pg.db_url)
    assert not b.wait_for_change(0.05)  # LISTENing from now
    a.enroll("alice", emb(1, 1), M1, ["a"], [1.0])
    assert b.wait_for_change(5.0) and b.generation() == a.generation() == 1
    a.close()
    b.close()


def test_store_migrate_sqlite_to_postgresql_and_refusal(pg: Any, tmp_path: Path) -> None:
    from vggvox_client.cli import main

    src = open_store(tmp_path / "vp.db")
    src.enroll_many([NewPrints("alice", emb(2, 1), ["kitchen:live", "b"], [1.0, 2.0]),
                     NewPrints("bob", emb(1, 2), ["c"], [3.0])], M1)
    ProvisionalVoices(src, M1).remember("mon.wav", [HeardVoice(emb(1, 3)[0], 1, 4.0, 0, 4)],
                                        RAW)
    ev = Evidence()
    ev.add(np.array([1.0, 2.0]), 3.0)
    roomstore.save(src, "kitchen", M1.sha256 or "", CAL, ev.as_dict(), 1)
    assert main(["store", "migrate", "--from", f"sqlite:{tmp_path / 'vp.db'}",
                 "--to", pg.db_url]) == 0
    dst = open_store(pg.db_url)
    assert [(s.name, s.embeddings) for s in dst.speakers()] == [("alice", 2), ("bob", 1)]
    np.testing.assert_allclose(dst.voiceprints(M1)[1], src.voiceprints(M1)[1])
    assert [v.label for v in ProvisionalVoices(dst, M1).list()] == ["unknown-1"]
    assert roomstore.load(dst, "kitchen", M1.sha256 or "", CAL) is not None
    assert ProvisionalVoices(dst, M1).remember(
        "tue.wav", [HeardVoice(emb(1, 9)[0], 1, 4.0, 0, 4)], RAW) == ["unknown-2"]
    assert main(["forget", "unknown-2", "--store", pg.db_url]) == 0  # the client on a URL
    assert [v.label for v in ProvisionalVoices(dst, M1).list()] == ["unknown-1"]
    # Another model's store is refused, and nothing of it is written.
    other = open_store(tmp_path / "other.db")
    other.enroll("carol", emb(1, 4), M1_OTHER_FILE, ["d"], [1.0])
    with pytest.raises(ModelMismatchError, match="nothing was copied"):
        from vggvox.storecopy import copy_store

        copy_store(other, dst)
    assert [s.name for s in dst.speakers()] == ["alice", "bob"]
    # And back, into a new SQLite file.
    assert main(["store", "migrate", "--from", pg.db_url,
                 "--to", f"sqlite:{tmp_path / 'back.db'}"]) == 0
    back = open_store(tmp_path / "back.db")
    assert [s.name for s in back.speakers()] == ["alice", "bob"]
    dst.close()


def test_store_locations_in_the_config_and_on_command_lines(tmp_path: Path) -> None:
    from vggvox.settings import parse
    from vggvox.storeopen import hidden, parse_store_location

    assert parse_store_location("sqlite:/a/b.db") == Path("/a/b.db")
    assert parse_store_location("b.db") == Path("b.db")
    url = "postgresql://vggvox:s3cret@db.lan:5433/vggvox?sslmode=require"
    assert parse_store_location(url) == url
    assert hidden(url) == "postgresql://vggvox:***@db.lan:5433/vggvox?sslmode=require"
    assert parse({"store": {"path": url}}).store_location() == url
    assert parse({"store": {"path": "sqlite:~/v.db"}}).store_location() == Path("~/v.db"
                                                                                ).expanduser()
    with pytest.raises(ConfigError, match=r"'store\.path' must be a file path, sqlite:PATH"):
        parse({"store": {"path": "mysql://h/db"}})
    done = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--store", "redis://h/0",
                           "--print-config"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2 and "unsupported scheme 'redis'" in done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []
