"""What can be wrong with a voiceprint store, said in words: a damaged row, a store
that cannot be written (read-only) and a full disk.

SQLite's own messages ("unable to open database file", "disk I/O error") name
neither the cause nor what happened to the data. These functions look at the
row, or at the file and its file system, and say both. A failed write is one
transaction rolled back, so every message about one ends the same way: nothing
was written, and every voiceprint already stored is kept.

Policy for damaged rows (``VoiceprintStore.voiceprints``): a speaker with a row
that cannot be a voiceprint of this model (a cut vector, another size, NaN or
Inf, all zeros) is left out of the loaded set, and that is logged as one ERROR
line naming the file, the table, the speaker and the row. Refusing to start
would leave every enrolled speaker unknown for one bad row; silently loading a
NaN vector made that speaker vanish from every score. The row itself is kept
as it is (nothing stored is deleted): re-enroll the speaker with ``--replace``,
or remove them.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NOTHING_LOST = "nothing was written, and every voiceprint already stored is kept"
LOW_SPACE = 1 << 20
"""Free bytes under which a failed write is put down to a full disk."""


@dataclass(frozen=True)
class DamagedRow:
    """One speaker's first bad row in the ``embeddings`` table."""

    path: Path | str
    """The store: its file, or a URL."""
    speaker: str
    row: int
    problem: str

    def __str__(self) -> str:
        return (f"{self.path}: table embeddings, speaker {self.speaker!r}, row {self.row}: "
                f"{self.problem}; {self.speaker!r} is left out until re-enrolled "
                "(enroll --replace) or removed")


def row_problem(blob: object, dim: object, expected: int | None) -> str | None:
    """Why one stored embedding cannot be used (None: it can). ``expected`` is the
    model's embedding size, when known."""
    if not isinstance(blob, bytes) or not isinstance(dim, int) or dim <= 0:
        return f"not a vector (vector is {type(blob).__name__}, dim {dim!r})"
    if len(blob) != 4 * dim:
        return (f"cut or padded vector: {len(blob)} bytes where dim {dim} needs {4 * dim}")
    if expected is not None and dim != expected:
        return f"a vector of {dim} values, where this model's have {expected}"
    v = np.frombuffer(blob, dtype=np.float32)
    if not np.all(np.isfinite(v)):
        bad = int(np.count_nonzero(~np.isfinite(v)))
        return f"{bad} of its {dim} values are NaN or infinite"
    if not np.any(v):
        return "all its values are zero"
    return None


def sort_rows(path: Path | str, rows: list[tuple[int, str, object, object]], expected: int | None
              ) -> tuple[dict[str, list[np.ndarray]], list[DamagedRow]]:
    """Rows (id, speaker, vector, dim) as each sound speaker's vectors, and each damaged
    speaker's first bad row; a damaged speaker has no vectors at all, since a voiceprint
    made of the rest would silently differ from the one enrolled."""
    if expected is None:
        expected = majority_dim([d for _, _, _, d in rows if isinstance(d, int)])
    grouped: dict[str, list[np.ndarray]] = {}
    damaged: dict[str, DamagedRow] = {}
    for row, speaker, blob, dim in rows:
        problem = row_problem(blob, dim, expected)
        if problem is not None:
            damaged.setdefault(speaker, DamagedRow(path, speaker, row, problem))
        elif speaker not in damaged:
            assert isinstance(blob, bytes)
            grouped.setdefault(speaker, []).append(np.frombuffer(blob, dtype=np.float32))
    for speaker in damaged:
        grouped.pop(speaker, None)
    return grouped, list(damaged.values())


def majority_dim(dims: list[int]) -> int | None:
    """The size most rows have: the expected one when the model's is not given."""
    if not dims:
        return None
    values, counts = np.unique(np.asarray(dims), return_counts=True)
    return int(values[int(np.argmax(counts))])


def explain(path: Path, error: sqlite3.Error) -> str:
    """One line for a failed store operation: read-only and full disks named as such."""
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or \
            "readonly" in text or "unable to open" in text:
        why = read_only_cause(path)
        if why:
            return f"{path}: the store cannot be written: {why}; {NOTHING_LOST}"
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk" in text:
        free = _free_bytes(path)
        if name.startswith("SQLITE_FULL") or (free is not None and free < LOW_SPACE):
            left = f" ({free} bytes free)" if free is not None else ""
            return f"{path}: no space left on the device that holds the store{left}; " \
                   f"{NOTHING_LOST}"
    return f"{path}: {text}"


def read_only_cause(path: Path) -> str | None:
    """Why this user cannot write the store at ``path`` (None: it can)."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"the file system holding {folder} is mounted read-only"
    except OSError:
        pass
    if path.exists() and not os.access(path, os.W_OK):
        mode = path.stat().st_mode & 0o777
        return f"the file is not writable by this user (mode {mode:o}, owner uid " \
               f"{path.stat().st_uid}, this user {os.getuid()})"
    if not os.access(folder, os.W_OK):
        return f"its folder {folder} is not writable by this user (SQLite writes its " \
               "-wal and -shm files beside the store)"
    return None


def read_only_uri(path: Path) -> str:
    """How to open a store that cannot be written, for reading. Where SQLite cannot
    create its -shm file (a read-only file system or folder) only ``immutable`` opens a
    WAL database; it is safe there, since nobody can change the file through this
    mount either."""
    folder = path.parent
    try:
        fs_read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        fs_read_only = False
    how = "immutable=1" if fs_read_only or not os.access(folder, os.W_OK) else "mode=ro"
    return f"{path.resolve().as_uri()}?{how}"


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
