"""Measurements of the voiceprint store: file modes and erasure (issue 8, section 5)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from abuse_common import (
    MAX_BYTES,
    NO_SPEECH,
    Row,
    speech_clips,
)
from benchkit import DaemonProcess, Reader

from vggvox_client.enroll import enroll


def m_privacy(tmp: Path, quick: bool) -> list[Row]:
    """7: the modes of the store's folder and files, the daemon started under umask 022."""
    attack = "daemon started under umask 022 with a new store folder; modes after an enroll"
    before = "folder 0755, store/-wal/-shm 0644"
    store = tmp / "state" / "voiceprints.db"
    tmp.mkdir(parents=True)
    old = os.umask(0o022)
    try:
        d = DaemonProcess(tmp)
        d.store = store
        d.argv[d.argv.index("--store") + 1] = str(store)
        d.start(timeout=60)
        try:
            what = "an enroll"
            if speech_clips():
                enroll(d.conn, "alice", speech_clips(), None, False, MAX_BYTES)
            else:
                d.conn.request("list")
                what = "a list (no speech to enroll)"
            held = "without a reader"
            names = ["voiceprints.db", "voiceprints.db-wal", "voiceprints.db-shm"]
            if not all((store.parent / f).exists() for f in names[1:]):
                # The daemon's connections are short-lived: hold one so -wal/-shm exist
                # (SQLite gives them the store file's mode, whoever opens it).
                held = "-wal/-shm seen while this process held a connection"
                db = sqlite3.connect(store)
                db.execute("SELECT COUNT(*) FROM speakers").fetchone()
            else:
                db = None
            modes = {f: (f"{os.stat(store.parent / f).st_mode & 0o777:04o}"
                         if (store.parent / f).exists() else "absent") for f in names}
            if db is not None:
                db.close()
            folder = f"{store.parent.stat().st_mode & 0o777:04o}"
        finally:
            d.stop()
    finally:
        os.umask(old)
    now = (f"folder {folder}, store {modes[names[0]]}, -wal {modes[names[1]]}, "
           f"-shm {modes[names[2]]} (after {what}; {held})")
    return [("7", attack, before, now)]


def stored_vectors(store: Path, name: str) -> list[bytes]:
    """The stored vector blobs of ``name`` (read, then the connection closed)."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return [bytes(r[0]) for r in db.execute(
            "SELECT vector FROM embeddings WHERE speaker = ?", (name,))]
    finally:
        db.close()


def occurrences(folder: Path, vectors: list[bytes]) -> int:
    """How many times the vectors' bytes occur in all files of ``folder``."""
    blobs = [f.read_bytes() for f in folder.iterdir() if f.is_file()]
    return sum(b.count(v) for b in blobs for v in vectors)


def m_erasure(tmp: Path, quick: bool) -> list[Row]:
    """8: after `remove`, the removed speaker's float32 vectors in the store's folder:
    without a reader; with another process holding a read transaction, at once and
    after the reader ends (+2 s)."""
    attack = ("`remove` a speaker, then count their vector bytes in every file of the "
              "store's folder, without and with a concurrent reader")
    before = "with a reader, the removed vectors stayed in the -wal"
    if not speech_clips() or not speech_clips("ls-3331"):
        return [("8", attack, before, NO_SPEECH)]
    tmp.mkdir(parents=True)
    d = DaemonProcess(tmp)
    store = tmp / "store" / "voiceprints.db"
    d.store = store
    d.argv[d.argv.index("--store") + 1] = str(store)
    d.start(timeout=60)
    try:
        enroll(d.conn, "carol", speech_clips("ls-3331"), None, False, MAX_BYTES)
        # Without a reader.
        enroll(d.conn, "bob", speech_clips(), None, False, MAX_BYTES)
        secret = stored_vectors(store, "bob")
        seen0 = occurrences(store.parent, secret)
        r = d.conn.request("remove", name="bob")
        alone = occurrences(store.parent, secret)
        alone_reply = r.get("erasure", "(no erasure field)")
        # With another process holding a read transaction.
        enroll(d.conn, "bob", speech_clips(), None, False, MAX_BYTES)
        secret = stored_vectors(store, "bob")
        reader = Reader(store)
        try:
            r = d.conn.request("remove", name="bob")
            with_reader = occurrences(store.parent, secret)
            reply = r.get("erasure", "(no erasure field)")
            where = ", ".join(f"{f.name.replace('voiceprints.db', '') or 'store'} "
                              f"{occurrences_file(f, secret)}"
                              for f in sorted(store.parent.iterdir()) if f.is_file())
        finally:
            reader.end()
        t_end = time.monotonic()
        time.sleep(2.0)
        after = occurrences(store.parent, secret)
        zero_at = None
        while time.monotonic() - t_end < 7.0:  # a little longer, to tell "late" from "never"
            if occurrences(store.parent, secret) == 0:
                zero_at = time.monotonic() - t_end
                break
            time.sleep(0.25)
        logged = "pending erasure of 'bob' complete" in d.output()
        speakers = [s["name"] for s in d.conn.request("list")["speakers"]]
    finally:
        d.stop()
    now = (f"{len(secret)} vectors ({seen0} occurrences before); no reader: {alone} left, "
           f"erasure '{alone_reply}'; with a reader: {with_reader} left ({where}), "
           f"erasure '{reply}'; reader ended +2 s: "
           + f"{after} left" + ("" if after == 0 else
                                 f" (0 after {zero_at:.1f} s)" if zero_at is not None else
                                 " (still there 7 s after)")
           + f" (\"complete\" logged: {'yes' if logged else 'no'}); speakers now {speakers}")
    return [("8", attack, before, now)]


def occurrences_file(path: Path, vectors: list[bytes]) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    return sum(data.count(v) for v in vectors)


