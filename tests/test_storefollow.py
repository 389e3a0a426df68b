"""The store follower (vggvoxd.storefollow), in-process and without a model: it loads
what another writer of the same SQLite file enrolls and removes, an outage is said
once and the voiceprints in memory stay, and the store's return is a resync. The
status and metrics entries, and the reply code of an enrollment the store refused."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from vggvox.errors import StoreUnavailable
from vggvox.protocol.errors import STORE_UNAVAILABLE, error_code, error_reply
from vggvox.store import VoiceprintStore
from vggvox.storebinding import ModelId
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.prometheus import DaemonCollector
from vggvoxd.storefollow import StoreFollower

DIM = 8
MODEL = ModelId("test@1", "ab" * 32)


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((1, DIM)).astype(np.float32)
    return v / np.linalg.norm(v)


class Flaky:
    """A real SQLite store that can be made unreachable, as a PostgreSQL one can."""

    def __init__(self, store: VoiceprintStore) -> None:
        self.inner, self.down = store, False
        self.location = store.location

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable(f"store {self.location} unreachable: connection refused")

    def generation(self) -> int:
        self._check()
        return self.inner.generation()

    def voiceprints(self, model: Any) -> tuple[list[str], np.ndarray]:
        self._check()
        return self.inner.voiceprints(model)

    def speakers(self) -> list[Any]:
        self._check()
        return self.inner.speakers()

    def wait_for_change(self, timeout_s: float) -> bool:
        self._check()
        return self.inner.wait_for_change(timeout_s)


def until(what: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``what`` holds (asserts it does within ``timeout``)."""
    t0 = time.monotonic()
    while not what():
        assert time.monotonic() - t0 < timeout, "not within the timeout"
        time.sleep(0.02)
    return time.monotonic() - t0


def follower(store: Any, loads: list[int] | None = None) -> StoreFollower:
    vps = VoiceprintSet(DIM, "test@1")
    counted = loads if loads is not None else []
    return StoreFollower(store, vps, MODEL, on_load=lambda: counted.append(len(vps)),
                         poll_s=0.2)


def test_another_writer_of_the_file_is_followed(tmp_path: Path) -> None:
    mine, theirs = VoiceprintStore(tmp_path / "v.db"), VoiceprintStore(tmp_path / "v.db")
    theirs.enroll("alice", vector(1), MODEL, ["a"], [1.0])
    loads: list[int] = []
    f = follower(mine, loads)
    f.check_model(allow_empty=False)
    assert len(f.voiceprints) == 1 and not loads, "the first load waits for start"
    f.start()
    try:
        assert loads == [1], "start wakes the index and the rooms once"
        theirs.enroll("bob", vector(2), MODEL, ["b"], [1.0])
        until(lambda: "bob" in f.voiceprints)
        theirs.remove("alice")
        until(lambda: "alice" not in f.voiceprints)
        assert f.refresh() is False, "nothing changed since: no load"
        health = f.health()
        assert health["backend"] == "sqlite" and health["reachable"] is True
        assert health["generation"] == mine.generation() and health["state"] == "ok"
    finally:
        f.stop()
    assert loads[-1] == 1 and f.loads == 3


def test_an_outage_is_said_once_and_the_voiceprints_stay(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inner = VoiceprintStore(tmp_path / "v.db")
    inner.enroll("alice", vector(1), MODEL, ["a"], [1.0])
    store = Flaky(inner)
    f = follower(store)
    f.check_model(allow_empty=False)
    f.start()
    try:
        with caplog.at_level(logging.INFO, logger="vggvoxd.storefollow"):
            store.down = True
            until(lambda: not f.reachable)
            time.sleep(1.0)  # five more looks at the store, all failed
            assert list(f.voiceprints.names) == ["alice"], "deciding from memory"
            health = f.health()
            assert health["state"] == "unreachable" and "connection refused" in \
                str(health["last_error"]) and f.outages == 1
            down = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(down) == 1 and down[0].levelno == logging.ERROR, "once per outage"
            inner.enroll("bob", vector(2), MODEL, ["b"], [1.0])  # missed meanwhile
            store.down = False
            until(lambda: f.reachable and "bob" in f.voiceprints)
        assert f.resyncs == 1 and f.outages == 1
        assert any("resynchronised" in r.getMessage() for r in caplog.records)
    finally:
        f.stop()


def test_status_and_metrics_say_where_the_store_is_and_whether_it_answers(
        tmp_path: Path) -> None:
    store = Flaky(VoiceprintStore(tmp_path / "v.db"))
    f = follower(store)
    f.check_model(allow_empty=False)
    store.down = True
    assert f.refresh() is False
    families = {m.name: m for m in DaemonCollector.store(f.health())}
    reachable = families["vggvox_store_reachable"].samples[0]
    assert reachable.value == 0 and reachable.labels == {"backend": "sqlite"}
    assert families["vggvox_store_outages"].samples[0].value == 1
    store.down = False
    assert f.refresh() is True, "back: the voiceprints are loaded again, whole"
    families = {m.name: m for m in DaemonCollector.store(f.health())}
    assert families["vggvox_store_reachable"].samples[0].value == 1
    assert families["vggvox_store_resyncs"].samples[0].value == 1
    assert families["vggvox_store_last_sync_timestamp_seconds"].samples[0].value > 0


def test_an_unreachable_store_is_one_reply_with_its_own_code() -> None:
    e = StoreUnavailable("store postgresql://db.lan:5432/vggvox unreachable: "
                         "connection refused")
    assert error_code(e) == STORE_UNAVAILABLE == "store_unavailable"
    reply = error_reply(str(e), error_code(e))
    assert msgpack.packb(reply) == (
        b"\x83\xa2ok\xc2\xa5error\xd9Estore postgresql://db.lan:5432/vggvox unreachable: "
        b"connection refused\xa4code\xb1store_unavailable")


def test_loads_from_several_threads_never_go_back(tmp_path: Path) -> None:
    """The control thread's refresh after its own enrollment and the follower's may
    race: one load at a time, and the generation never goes back."""
    store = VoiceprintStore(tmp_path / "v.db")
    f = follower(store)
    f.check_model(allow_empty=False)
    seen: list[int] = []

    def writer() -> None:
        for i in range(10):
            store.enroll(f"s{i}", vector(i), MODEL, ["x"], [1.0], force=True)
            f.refresh()
            seen.append(f.generation)

    threads = [threading.Thread(target=writer), threading.Thread(
        target=lambda: [f.refresh() for _ in range(30)])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert seen == sorted(seen) and f.refresh(force=True) and len(f.voiceprints) == 10


def test_a_large_set_follows_speaker_by_speaker_as_a_whole_read_would(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Past ``incremental_above`` only the changed speakers are read (added, appended
    to, replaced, removed); the voiceprints in memory are those a whole read gives."""
    mine, theirs = VoiceprintStore(tmp_path / "v.db"), VoiceprintStore(tmp_path / "v.db")
    for i in range(6):
        theirs.enroll(f"s{i}", vector(i), MODEL, ["x"], [1.0], force=True)
    f = StoreFollower(mine, VoiceprintSet(DIM, "test@1"), MODEL, incremental_above=4)
    f.check_model(allow_empty=False)
    theirs.enroll("s1", vector(11), MODEL, ["y"], [2.0], force=True)  # appended
    theirs.enroll("s2", vector(12), MODEL, ["y"], [2.0], replace=True, force=True)
    theirs.enroll("new", vector(13), MODEL, ["y"], [2.0], force=True)
    theirs.remove("s3")
    with caplog.at_level(logging.INFO, logger="vggvoxd.storefollow"):
        assert f.refresh() is True
    assert "3 changed, 1 gone" in caplog.text
    whole = VoiceprintSet(DIM, "test@1")
    whole.load(mine, MODEL)
    assert f.voiceprints.names == whole.names and "s3" not in whole.names
    np.testing.assert_allclose(f.voiceprints.snapshot().matrix, whole.snapshot().matrix,
                               atol=1e-6)
    assert f.refresh() is False, "nothing changed since"


def test_a_change_the_log_cannot_name_is_read_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A writer that keeps no change log (an older vggvox) leaves a gap in it: the
    follower of a large set reads the store whole rather than miss its change."""
    import sqlite3

    mine = VoiceprintStore(tmp_path / "v.db")
    for i in range(6):
        mine.enroll(f"s{i}", vector(i), MODEL, ["x"], [1.0], force=True)
    f = StoreFollower(mine, VoiceprintSet(DIM, "test@1"), MODEL, incremental_above=4)
    f.check_model(allow_empty=False)
    with sqlite3.connect(tmp_path / "v.db") as db:  # as the previous version writes
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM speakers WHERE name = 's0'")
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                   "WHERE key = 'generation'")
    with caplog.at_level(logging.INFO, logger="vggvoxd.storefollow"):
        assert f.refresh() is True
    assert "read whole" in caplog.text and "s0" not in f.voiceprints
    caplog.clear()
    mine.enroll("s7", vector(7), MODEL, ["x"], [1.0], force=True)
    with caplog.at_level(logging.INFO, logger="vggvoxd.storefollow"):
        assert f.refresh() is True
    assert "1 changed, 0 gone" in caplog.text and "s7" in f.voiceprints
