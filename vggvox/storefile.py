"""The store's file: created private, opened read-write, or read-only while it
cannot be written (a read-only file system, folder or file: found at start, or
when the file system is remounted under a running daemon).

Voiceprints are biometric data: the file is created 0600 whatever the umask
(SQLite gives its ``-wal`` and ``-shm`` files the same mode), and a store file
of ours found more open is tightened. Read-only, its speakers are still read
(a daemon keeps naming them) and each write is refused in one line
(``storehealth.explain``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from vggvox import storechanges
from vggvox.errors import StoreError
from vggvox.storeapi import Rows
from vggvox.storehealth import explain, read_only_cause, read_only_uri

log = logging.getLogger("vggvox.store")


class StoreFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.read_only: str | None = None
        """Why the store cannot be written (then it is opened for reading), or None."""

    def read_only_now(self) -> bool:
        """Whether the store exists but cannot be written (then it is read-only from now)."""
        cause = read_only_cause(self.path) if self.path.is_file() else None
        if cause is not None:
            self._go_read_only(cause)
        return cause is not None

    def create_private(self) -> None:
        """Create the store file 0600 (before SQLite does, with the umask's mode)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            why = read_only_cause(self.path) or e.strerror
            raise StoreError(f"{self.path}: cannot create the store: {why}") from None
        try:
            st = os.fstat(fd)
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def open(self) -> sqlite3.Connection:
        """A connection: read-write, or read-only while the store cannot be written
        (found at start, or when a file system is remounted read-only under us)."""
        if self.read_only is not None and read_only_cause(self.path) is None:
            log.info("%s: the store can be written again", self.path)
            self.read_only = None
        try:
            return self._open_as(self.read_only)
        except sqlite3.Error as e:
            cause = read_only_cause(self.path) if self.read_only is None else None
            if cause is None:
                raise StoreError(explain(self.path, e)) from None
        self._go_read_only(cause)
        try:
            return self._open_as(cause)
        except sqlite3.Error as e:
            raise StoreError(explain(self.path, e)) from None

    def _go_read_only(self, cause: str) -> None:
        self.read_only = cause
        log.warning("%s: %s: its voiceprints are read, but enrollments and removals "
                    "will be refused", self.path, cause)

    def _open_as(self, read_only: str | None) -> sqlite3.Connection:
        if read_only is None:
            db = sqlite3.connect(self.path, timeout=10.0)
        else:
            db = sqlite3.connect(read_only_uri(self.path), timeout=10.0, uri=True)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")  # never left to the build's default
            if read_only is None:
                db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error:
            db.close()
            raise
        return db


class SqliteTx:
    """A ``storeapi.Tx`` on one SQLite connection (its transaction is ``with db``)."""

    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection, location: str, writable: bool) -> None:
        self.db = db
        self.location = location
        self.writable = writable

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        return self.db.execute(sql, params)

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        self.db.executemany(sql, params)

    def blob(self, column: str) -> str:
        # A damaged row may hold text, even text that is not UTF-8, which Python's
        # sqlite3 would fail to decode.
        return f"CAST({column} AS BLOB)"

    def ensure_table(self, name: str, sqlite_ddl: str) -> bool:
        if self.writable:
            self.db.execute(sqlite_ddl)
            return True
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)
                               ).fetchone() is not None

    def lock(self, table: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")  # the whole file: SQLite has one writer

    def bump_generation(self, names: Collection[str] | None = None) -> int:
        generation = int(self.db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation' "
            "RETURNING value").fetchone()[0])
        storechanges.record(self, generation, names)
        return generation
