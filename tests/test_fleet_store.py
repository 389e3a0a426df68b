"""Two real daemons on one PostgreSQL store (a private PostgreSQL 15, tests/pgserver.py):
enrolled on one, named by the other; removed on one, gone everywhere (both lists, and
the database's rows); the database stopped in the middle of an enrollment (one clear
error, nothing half-written, the daemons go on deciding from memory and say so);
started again (they resynchronise, and a later enrollment reaches both again).

One server and one pair of daemons for the module (each daemon loads its model once);
each test uses names of its own and counts relative to what it found, so that any of
them may run alone (pytest-xdist may hand them to different workers).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import DaemonProcess
from speakers_fixture import conversation, score_events

from conftest import FIXTURES
from vggvox.audio import load_audio
from vggvox.protocol.errors import STORE_UNAVAILABLE
from vggvox.protocol.pcm import to_pcm
from vggvox_client.connection import ClientError
from vggvox_client.replay import replay_one

pytestmark = pytest.mark.skipif(not (FIXTURES / "stream_2spk.wav").exists(),
                                reason="needs ../shared/data/fixtures")


@dataclass
class Fleet:
    pg: Any
    a: DaemonProcess
    b: DaemonProcess
    tmp: Path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    import pgserver

    why = pgserver.available()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("fleet")
    with pgserver.PostgresServer() as pg:
        daemons = []
        for name in ("a", "b"):
            (tmp / name).mkdir()
            daemons.append(DaemonProcess(tmp / name, args=["--store", pg.url]))
        try:
            starts = [threading.Thread(target=d.start) for d in daemons]
            for t in starts:
                t.start()
            for t in starts:
                t.join(timeout=90)
            for d in daemons:
                d.conn.request("status", timeout=5)  # both answer
            yield Fleet(pg, daemons[0], daemons[1], tmp)
        finally:
            for d in daemons:
                if d.proc is not None:
                    d.stop()


def clips(speaker: str) -> list[bytes]:
    return [to_pcm(load_audio(f)) for f in sorted(FIXTURES.glob(f"{speaker}__*.wav"))]


def enroll(d: DaemonProcess, name: str, speaker: str, timeout: float = 60) -> dict[str, Any]:
    return d.conn.request("enroll", timeout=timeout, name=name, audio=clips(speaker))


def names(d: DaemonProcess) -> set[str]:
    return {s["name"] for s in d.conn.request("list", timeout=5)["speakers"]}


def store_stage(d: DaemonProcess) -> dict[str, Any]:
    return dict(d.conn.request("status", timeout=5)["stages"]["store"])


def until(what: Callable[[], bool], timeout: float, why: str) -> float:
    t0 = time.monotonic()
    while not what():
        assert time.monotonic() - t0 < timeout, why
        time.sleep(0.05)
    return time.monotonic() - t0


def rows(pg: Any, name: str) -> int:
    return int(pg.psql(f"SELECT (SELECT count(*) FROM speakers WHERE name = '{name}') + "
                       f"(SELECT count(*) FROM embeddings WHERE speaker = '{name}')"))


def in_memory(d: DaemonProcess) -> int:
    """The voiceprints ``d`` decides with (its ``list`` reads the store; ``status`` says
    how many it holds in memory)."""
    return int(d.conn.request("status", timeout=5)["speakers"])


def conversation_speakers(fleet: Fleet) -> None:
    """The conversation's two speakers, enrolled on A (once per module) and in B's memory."""
    missing = {"ls-3005", "ls-3331"} - names(fleet.a)
    before = in_memory(fleet.b)
    for speaker in sorted(missing):
        assert enroll(fleet.a, speaker, speaker)["action"] == "added"
    until(lambda: in_memory(fleet.b) == before + len(missing), 5,
          "B never loaded A's enrollments")


def test_enrolled_on_one_daemon_is_named_by_the_other(fleet: Fleet) -> None:
    a, b = fleet.a, fleet.b
    before = in_memory(b)
    assert enroll(a, "newcomer", "vctk-p226")["action"] == "added"
    took = until(lambda: in_memory(b) == before + 1, 5, "B never loaded A's enrollment")
    assert took < 3.0, took
    assert "newcomer" in names(b)
    conversation_speakers(fleet)
    convo = conversation(fleet.tmp)
    events = replay_one(b.conn, convo.stream, realtime=False, as_json=True, timeout=120,
                        echo=False)
    good, total = score_events(events, convo.turns)
    assert total >= 10 and good / total >= 0.9, (good, total)
    stage = store_stage(b)
    assert stage["backend"] == "postgresql" and stage["reachable"] is True
    assert stage["location"].startswith("postgresql://") and stage["loads"] >= 2


def test_removed_on_one_daemon_is_gone_everywhere(fleet: Fleet) -> None:
    a, b = fleet.a, fleet.b
    before = in_memory(b)
    enroll(a, "visitor", "vctk-p225")
    until(lambda: in_memory(b) == before + 1, 5, "B never loaded the visitor")
    assert rows(fleet.pg, "visitor") > 0
    reply = a.conn.request("remove", timeout=30, name="visitor")
    assert reply["removed"] == "visitor" and reply["erasure"] in ("complete", "pending")
    until(lambda: in_memory(b) == before, 5, "B still holds the visitor's voiceprint")
    assert "visitor" not in names(a) and "visitor" not in names(b)
    fleet.pg.psql("VACUUM")  # whatever the daemon's own vacuum did: no row is left
    assert rows(fleet.pg, "visitor") == 0


def stop_during_enrollment(fleet: Fleet) -> dict[str, Any]:
    """Hold the speakers table from psql so that A's enrollment waits inside its
    transaction, then stop the database under it: A's reply."""
    pg = fleet.pg
    holder = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", str(pg.bin / "psql"), "-h", "127.0.0.1", "-p",
         str(pg.port), "-U", "vggvox", "-d", "vggvox", "-c",
         "BEGIN; LOCK TABLE speakers IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=pg.root)
    reply: dict[str, Any] = {}

    def run() -> None:
        try:
            reply.update(enroll(fleet.a, "midway", "vctk-p226"))
        except ClientError as e:
            reply.update(error=str(e), code=e.code)

    try:
        until(lambda: pg.psql("SELECT count(*) FROM pg_locks WHERE relation = "
                              "'speakers'::regclass AND mode = 'AccessExclusiveLock' "
                              "AND granted") == "1", 10, "psql never took the lock")
        t = threading.Thread(target=run)
        t.start()
        until(lambda: pg.psql("SELECT count(*) FROM pg_locks WHERE relation = "
                              "'speakers'::regclass AND NOT granted") != "0", 30,
              "A's enrollment never reached the table")
        pg.stop("fast")  # rolls back every open transaction, A's too
        t.join(timeout=60)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    return reply


def test_the_database_stopped_and_started_again(fleet: Fleet) -> None:
    a, b, pg = fleet.a, fleet.b, fleet.pg
    conversation_speakers(fleet)
    reply = stop_during_enrollment(fleet)
    try:
        assert reply.get("code") == STORE_UNAVAILABLE, reply
        assert "unreachable" in reply["error"] and "\n" not in reply["error"]
        for d in (a, b):
            until(lambda d=d: store_stage(d)["reachable"] is False, 5,  # type: ignore[misc]
                  "the daemon never said the store is unreachable")
        # Still deciding, from memory: every window of a replay decided, turns named.
        convo = conversation(fleet.tmp)
        before = b.conn.request("status", timeout=5)
        events = replay_one(b.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
        good, total = score_events(events, convo.turns)
        assert total >= 10 and good / total >= 0.9, (good, total)
        after = b.conn.request("status", timeout=5)
        assert after["dropped_windows"] == before["dropped_windows"] == 0
        # Another attempt: one clear line again, at once.
        with pytest.raises(ClientError) as refused:
            enroll(a, "later", "vctk-p226")
        assert refused.value.code == STORE_UNAVAILABLE
        with pytest.raises(ClientError) as refused:  # a removal too
            a.conn.request("remove", timeout=30, name="ls-3005")
        assert refused.value.code == STORE_UNAVAILABLE and "\n" not in str(refused.value)
        stage = store_stage(a)
        assert stage["state"] == "unreachable" and stage["outages"] == 1
    finally:
        pg.start()
    for d in (a, b):
        until(lambda d=d: store_stage(d)["reachable"] is True, 10,  # type: ignore[misc]
              "the daemon never came back to the store")
        assert store_stage(d)["resyncs"] == 1
        logged = d.log.read_text(errors="replace")
        assert logged.count("enrollments and removals refused until it is back") == 1
        assert "resynchronised" in logged
    assert rows(pg, "midway") == 0, "nothing of the interrupted enrollment remains"
    assert {"ls-3005", "ls-3331"} <= names(a), "the refused removal removed nothing"
    before = in_memory(b)
    assert enroll(a, "later", "vctk-p226")["action"] == "added"
    until(lambda: in_memory(b) == before + 1, 5,
          "the enrollment after the return never reached B's memory")


def test_two_daemons_on_one_sqlite_file_follow_each_other(tmp_path: Path) -> None:
    """No NOTIFY in SQLite: B sees A's enrollment and removal by its generation, within
    the follower's second."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shared = ["--store", str(tmp_path / "shared.db")]
    a, b = DaemonProcess(tmp_path / "a", args=shared), DaemonProcess(tmp_path / "b", args=shared)
    try:
        for d in (a, b):
            d.start()
        enroll(a, "ls-3005", "ls-3005")
        took = until(lambda: b.conn.request("status", timeout=5)["speakers"] == 1, 5,
                     "B never loaded A's enrollment from the file")
        assert took < 3.0, took  # the follower looks every second; a loaded machine
        stage = store_stage(b)
        assert stage["backend"] == "sqlite" and stage["location"].endswith("shared.db")
        a.conn.request("remove", timeout=10, name="ls-3005")
        until(lambda: b.conn.request("status", timeout=5)["speakers"] == 0, 5,
              "B still holds the removed speaker")
    finally:
        for d in (a, b):
            if d.proc is not None:
                d.stop()


def test_a_daemon_whose_store_is_unreachable_at_start_refuses_to_start(tmp_path: Path) -> None:
    """With no voiceprints in memory it would name nobody: exit 1 in one line, for
    systemd to start it again (Restart=on-failure)."""
    from pgserver import free_port

    url = f"postgresql://vggvox@127.0.0.1:{free_port()}/vggvox"
    d = DaemonProcess(tmp_path, args=["--store", url])
    with pytest.raises(RuntimeError, match="exited 1"):
        d.start(timeout=60)
    logged = d.log.read_text(errors="replace")
    assert f"cannot start: store {url} unreachable: " in logged
    assert "Traceback" not in logged
