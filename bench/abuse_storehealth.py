"""Measurements of a damaged, read-only or full store under a real vggvoxd (issue 20,
part 1, item 7): what the user is told, and what is kept.

    .venv/bin/python bench/abuse_storehealth.py [--quick]

The read-only and full-disk cases mount a real tmpfs, so they need root; they say
so and are skipped otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from abuse_common import MAX_BYTES, NO_SPEECH, Row, main_alone, short, speech_clips
from benchkit import DaemonProcess, tmpfs  # tmpfs: root only, checked before it is used

from vggvox.embedder import l2_normalize
from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox.store import ModelId, VoiceprintStore
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll

DAMAGES = {
    "a cut BLOB": "vector = substr(vector, 1, 100)",
    "a wrong dim": "dim = dim - 1",
    "a NaN vector": "vector = x'0000c07f' || substr(vector, 5)",
}


def daemon_on(tmp: Path, store: Path) -> DaemonProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    d = DaemonProcess(tmp)
    d.store = store
    d.argv[d.argv.index("--store") + 1] = str(store)
    return d


def m_damaged(tmp: Path, quick: bool) -> list[Row]:
    """A store with one damaged speaker of three, for each kind of damage: does the daemon
    start, what does its log say, and who is listed and loaded."""
    rows: list[Row] = []
    card = load_card(resolve_card(DEFAULT_MODEL))
    before = {"a cut BLOB": "raw ValueError traceback naming no file",
              "a wrong dim": "raw ValueError traceback naming no file",
              "a NaN vector": "loaded silently; that speaker vanished from every score"}
    for kind, sql in DAMAGES.items():
        where = tmp / kind.replace(" ", "_")
        store_path = where / "voiceprints.db"
        where.mkdir(parents=True)
        store = VoiceprintStore(store_path)
        rng = np.random.default_rng(0)
        for name in ("alice", "bob", "carol"):
            store.enroll(name, l2_normalize(rng.standard_normal((2, card.embedding_size))),
                         ModelId.of(card), ["a", "b"], [3.0, 3.0])
        with sqlite3.connect(store_path) as db:
            db.execute(f"UPDATE embeddings SET {sql} WHERE id = (SELECT MIN(id) FROM "
                       "embeddings WHERE speaker = 'bob')")
        d = daemon_on(where, store_path)
        t0 = time.monotonic()
        d.start(timeout=60)
        started = time.monotonic() - t0
        try:
            loaded = d.conn.request("status")["speakers"]
            listed = len(d.conn.request("list")["speakers"])
        finally:
            code, _ = d.stop()
        log = d.log.read_text()
        lines = [ln for ln in log.splitlines() if "speaker 'bob'" in ln]
        said = lines[0].split(" ", 3)[-1].replace(str(store_path), "STORE") if lines else ""
        now = (f"up in {started:.1f} s, exit {code} on SIGTERM; {len(lines)} ERROR line: "
               f"\"{short(said, 150)}\"; "
               f"tracebacks {log.count('Traceback')}; listed {listed} of 3, loaded {loaded}")
        rows.append(("20.1.7", f"store row with {kind} (1 speaker of 3), daemon started on it",
                     before[kind], now))
    return rows


def m_readonly_full(tmp: Path, quick: bool) -> list[Row]:
    """`enroll` through a real daemon whose store's file system is read-only, then full."""
    attack_ro = "`enroll` with the store's file system remounted read-only"
    attack_full = "`enroll` with the store's disk full"
    if os.geteuid() != 0:
        why = "skipped: mounting a tmpfs needs root"
        return [("20.1.7", attack_ro, "", why), ("20.1.7", attack_full, "", why)]
    if not speech_clips() or not speech_clips("ls-3331"):
        return [("20.1.7", attack_ro, "", NO_SPEECH), ("20.1.7", attack_full, "", NO_SPEECH)]
    rows: list[Row] = []
    for attack, before, size, fill in (
            (attack_ro, "\"unable to open database file\"", "8m", False),
            (attack_full, "\"disk I/O error\"", "2m", True)):
        with tmpfs(tmp / ("full" if fill else "ro"), size) as mnt:
            d = daemon_on(tmp / ("d_full" if fill else "d_ro"), mnt / "voiceprints.db")
            d.start(timeout=60)
            try:
                enroll(d.conn, "alice", speech_clips(), None, False, MAX_BYTES)
                if fill:
                    try:
                        (mnt / "filler").write_bytes(b"\0" * (64 << 20))
                    except OSError:
                        pass
                else:
                    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True,
                                   timeout=10)
                try:
                    enroll(d.conn, "carol", speech_clips("ls-3331"), None, False,
                           MAX_BYTES)
                    said = "enrolled (no error)"
                except ClientError as e:
                    said = str(e)
                if fill:
                    (mnt / "filler").unlink()
                up = d.proc is not None and d.proc.poll() is None
                listed = [s["name"] for s in d.conn.request("list")["speakers"]]
            finally:
                d.stop()
        said = said.replace(str(mnt / "voiceprints.db"), "STORE").replace(str(mnt), "MOUNT")
        rows.append(("20.1.7", attack, before, f"\"{short(said, 200)}\"; daemon up: "
                     f"{'yes' if up else 'no'}; listed after: {listed}"))
    return rows


MEASUREMENTS = {"damaged": m_damaged, "rofull": m_readonly_full}

if __name__ == "__main__":
    sys.exit(main_alone(MEASUREMENTS, __doc__ or "", "(no effect)"))
