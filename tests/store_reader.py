"""Helpers for erasure tests: a second process holding a read transaction on a store,
and a scan of a folder's bytes for vectors."""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path

import numpy as np


def vectors_in_folder(folder: Path, rows: np.ndarray) -> int:
    """How many of ``rows`` (float32 vectors) appear, byte for byte, in any file of folder."""
    blobs = b"".join(f.read_bytes() for f in folder.iterdir() if f.is_file())
    return sum(r.astype(np.float32).tobytes() in blobs for r in rows)


READER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN")
print(db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0], flush=True)
sys.stdin.readline()  # hold the read transaction until told
db.execute("COMMIT")
"""


class Reader:
    """Another process holding a read transaction (an old snapshot) on a store."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READER, str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready, "the reader did not start within 10 s"
        self.rows = int(self.proc.stdout.readline())

    def end(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=10) == 0
