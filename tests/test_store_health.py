"""A damaged store, a read-only one and a full disk: one line each, naming the file
and what is wrong, and nothing stored lost (vggvox/storehealth.py).

The read-only and full-disk cases mount a real tmpfs (root only: they skip
otherwise); the damaged rows are written into a real SQLite file, and a real
daemon is started on them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from daemon_proc import DaemonProcess

from vggvox.embedder import l2_normalize
from vggvox.errors import StoreError
from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox.store import ModelId, VoiceprintStore

MODEL = ModelId("m@1", None, 8)
CLIENT = Path(sys.executable).parent / "vggvox-client"


def emb(n: int, seed: int, dim: int = 8) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).standard_normal((n, dim)))


def three_speakers(path: Path) -> VoiceprintStore:
    store = VoiceprintStore(path)
    for i, name in enumerate(("alice", "bob", "carol")):
        store.enroll(name, emb(2, i), "m@1", ["a", "b"], [3.0, 3.0])
    return store


def damage(path: Path, speaker: str, sql: str, *params: object) -> None:
    """Rewrite the speaker's first row behind the store's back, as a bad disk or tool would."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT MIN(id) FROM embeddings WHERE speaker = ?", (speaker,)
                         ).fetchone()[0]
        db.execute(f"UPDATE embeddings SET {sql} WHERE id = ?", (*params, row))


NAN = np.full(8, np.nan, dtype=np.float32).tobytes()
INF = np.r_[np.ones(7), np.inf].astype(np.float32).tobytes()

DAMAGES = {
    "wrong dim": ("dim = ?", (7,), "cut or padded vector: 32 bytes where dim 7 needs 28"),
    "cut blob": ("vector = substr(vector, 1, 20)", (), "cut or padded vector: 20 bytes"),
    "other size": ("vector = ?, dim = ?", (np.ones(4, np.float32).tobytes(), 4),
                   "a vector of 4 values, where this model's have 8"),
    "nan": ("vector = ?", (NAN,), "8 of its 8 values are NaN or infinite"),
    "inf": ("vector = ?", (INF,), "1 of its 8 values are NaN or infinite"),
    "zeros": ("vector = ?", (bytes(32),), "all its values are zero"),
    "text": ("vector = 'hello'", (), "cut or padded vector: 5 bytes where dim 8 needs 32"),
    "not utf-8": ("vector = CAST(x'ff00ff' AS TEXT)", (), "cut or padded vector: 3 bytes"),
    "text dim": ("dim = 'eight'", (), "not a vector (vector is bytes, dim 'eight')"),
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_row_leaves_its_speaker_out_in_one_line(
        tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "vp.db"
    store = three_speakers(path)
    sql, params, problem = DAMAGES[kind]
    damage(path, "bob", sql, *params)
    with caplog.at_level(logging.ERROR, logger="vggvox.store"):
        names, prints = store.voiceprints(MODEL)
        store.voiceprints(MODEL)  # a second read (the daemon's refresh) does not repeat it
    assert names == ["alice", "carol"] and np.all(np.isfinite(prints))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    line = errors[0]
    assert "\n" not in line and str(path) in line and "table embeddings" in line
    assert "speaker 'bob'" in line and problem in line, line
    assert [d.speaker for d in store.damaged] == ["bob"]
    # Nothing stored is deleted: the row is there for whoever repairs it.
    assert [(s.name, s.embeddings) for s in store.speakers()] == [
        ("alice", 2), ("bob", 2), ("carol", 2)]
    # An append to bob compares against his voiceprint: refused in the same one line.
    with pytest.raises(StoreError, match="speaker 'bob'"):
        store.voiceprint_of("bob", MODEL)
    # Replacing bob repairs him.
    store.enroll("bob", emb(1, 9), "m@1", ["c"], [3.0], replace=True)
    assert store.voiceprints(MODEL)[0] == ["alice", "bob", "carol"] and not store.damaged


def test_without_the_model_size_the_odd_size_out_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "vp.db"
    store = three_speakers(path)
    damage(path, "carol", "vector = ?, dim = ?", np.ones(4, np.float32).tobytes(), 4)
    assert store.voiceprints("m@1")[0] == ["alice", "bob"]  # a tag alone: no size known


def test_the_daemon_starts_on_a_damaged_store_and_says_so_once(tmp_path: Path) -> None:
    """A real vggvoxd: it starts, names the damaged speaker in one ERROR line, no
    traceback, and lists every speaker (nothing is lost)."""
    card = load_card(resolve_card(DEFAULT_MODEL))
    d = DaemonProcess(tmp_path)
    store = VoiceprintStore(d.store)
    for i, name in enumerate(("alice", "bob")):
        store.enroll(name, emb(1, i, card.embedding_size), ModelId.of(card), ["a"], [3.0])
    damage(d.store, "bob", "vector = substr(vector, 1, 100)")
    d.start(timeout=60)
    try:
        status = d.conn.request("status")
        listed = {s["name"]: s["damaged"] for s in d.conn.request("list")["speakers"]}
        shown = subprocess.run([str(CLIENT), "--control", d.conn.control, "--events",
                                d.conn.events, "speakers"], capture_output=True, text=True,
                               timeout=60).stdout
    finally:
        code, _ = d.stop()
    assert code == 0 and status["speakers"] == 1 and list(listed) == ["alice", "bob"]
    assert listed["alice"] is None and listed["bob"].startswith("row 2: cut or padded vector")
    assert "bob" in shown and "DAMAGED, not identified (row 2: cut or padded" in shown, shown
    log = d.log.read_text()
    lines = [ln for ln in log.splitlines() if "speaker 'bob'" in ln]
    assert len(lines) == 1, log
    assert "table embeddings" in lines[0] and str(d.store) in lines[0]
    assert "Traceback" not in log


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    where.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                   check=True, timeout=10)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=10)


def test_a_read_only_store_is_named_as_such(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as mnt:
        store = three_speakers(mnt / "vp.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=10)
        with pytest.raises(StoreError) as e:
            store.enroll("dave", emb(1, 5), "m@1", ["d"], [3.0])
        line = str(e.value)
        assert f"{mnt}/vp.db: the store cannot be written: the file system holding {mnt} " \
               "is mounted read-only; nothing was written" in line and "\n" not in line
        assert [s.name for s in store.speakers()] == ["alice", "bob", "carol"]


def test_a_full_disk_is_named_as_such_and_loses_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "256k") as mnt:
        store = three_speakers(mnt / "vp.db")
        filler = mnt / "filler"
        with filler.open("wb") as f, pytest.raises(OSError):
            f.write(b"\0" * (1 << 20))
        with pytest.raises(StoreError) as e:
            for i in range(40):  # until the WAL needs a page the disk does not have
                store.enroll(f"p{i}", emb(40, i), "m@1", ["x"] * 40, [1.0] * 40)
        line = str(e.value)
        assert "no space left on the device that holds the store" in line, line
        assert "nothing was written, and every voiceprint already stored is kept" in line
        acknowledged = i
        # While the disk is full even a read can fail (SQLite cannot grow its -shm
        # file), and says so in the same words; once there is room, every enrollment
        # that was acknowledged is there, and the next one works.
        filler.unlink()
        store.enroll("dave", emb(1, 5), "m@1", ["d"], [3.0])
        names = [s.name for s in store.speakers()]
        assert names == sorted(["alice", "bob", "carol", "dave",
                                *(f"p{k}" for k in range(acknowledged))])


def test_a_daemon_on_a_read_only_store_names_its_speakers_and_refuses_writes(
        tmp_path: Path, voices: dict[str, list[Path]]) -> None:
    """A real vggvoxd on a store whose file system is read-only: it starts, lists and
    loads the speakers, and `enroll` is refused in one line that says why."""
    card = load_card(resolve_card(DEFAULT_MODEL))
    with tmpfs(tmp_path / "ro", "4m") as mnt:
        d = DaemonProcess(tmp_path)
        d.store = mnt / "voiceprints.db"
        d.argv[d.argv.index("--store") + 1] = str(d.store)
        store = VoiceprintStore(d.store)
        store.enroll("alice", emb(1, 1, card.embedding_size), ModelId.of(card), ["a"], [3.0])
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=10)
        d.start(timeout=60)
        try:
            assert d.conn.request("status")["speakers"] == 1
            r = subprocess.run([str(CLIENT), "--control", d.conn.control, "--events",
                                d.conn.events, "enroll", "bob", *map(str, voices["bob"])],
                               capture_output=True, text=True, timeout=120)
        finally:
            d.stop()
    assert r.returncode == 2, r
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the store cannot be written: the file system holding" in r.stderr
    assert "is mounted read-only; nothing was written" in r.stderr
    assert "read, but enrollments and removals will be refused" in d.log.read_text()
