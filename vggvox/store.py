"""The voiceprint store: speakers and their enrollment embeddings in SQLite.

This is the default backend of ``storeapi.Store``; ``store_pg.PgStore`` keeps the
same rules in PostgreSQL, and ``storeopen.open_store`` picks one from a path or
URL. The rows are read and written by ``storerows`` for both, and both take their
reads' and writes' methods from ``storereads.StoreReads`` and
``storewrites.StoreWrites``.

A store is bound to the model file that made its first enrollment, by the
file's sha256 (``ModelId``); embeddings of another model, or of another file
under the same name and version, are refused on write and on read, so scores
never mix models. The readable tag (``name@version``) is kept beside the hash
for lists and events. Stores of schema 1 held only the tag: they are migrated
in place, and their speakers are bound to the first model file of that tag
that reads or writes them (logged). Each enrollment is one transaction. A
``generation`` counter, bumped by every write, lets a long-running reader
notice changes cheaply. A new speaker whose name looks like an enrolled one's
is refused unless forced (``names.py``).

Voiceprints are biometric data: a folder the store creates is 0700, the store
file 0600 whatever the umask (SQLite gives its ``-wal`` and ``-shm`` files the
same mode), and a store file of ours found more open is tightened. Deleted
rows are overwritten (``secure_delete``), and a removal ends with a WAL
checkpoint that truncates the log; a reader can hold that up, and then the
store says so and finishes it later (``erasure.py``). A removed speaker's name is
left in no row: the change log's rows of it lose it (``storechanges.forget``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vggvox import storechanges
from vggvox.erasure import Erasure
from vggvox.errors import StoreError
from vggvox.names import MAX_NAME_LENGTH, check_name
from vggvox.storebinding import ModelId
from vggvox.storefile import SqliteTx, StoreFile
from vggvox.storehealth import DamagedRow, explain
from vggvox.storerows import HeldNames, NewPrints, SpeakerInfo
from vggvox.storewrites import StoreWrites

__all__ = [
    "MAX_NAME_LENGTH", "DamagedRow", "ModelId", "NewPrints", "SpeakerInfo", "VoiceprintStore",
    "check_name",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    model_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    speaker TEXT NOT NULL REFERENCES speakers(name) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    dim INTEGER NOT NULL,
    source TEXT NOT NULL,
    seconds REAL NOT NULL
);
""" + storechanges.SQLITE_DDL


class VoiceprintStore(StoreWrites):
    """SQLite-backed voiceprints. Safe to use from several threads and processes."""

    erasure: Erasure

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.erasure = Erasure(self.path, lambda: self._connect())
        self.damaged: list[DamagedRow] = []
        self._held = HeldNames()
        """The names and their look-alike skeletons, kept between enrollments."""
        self.file = StoreFile(self.path)
        self._create()

    @property
    def read_only(self) -> str | None:
        """Why this store cannot be written (then it is only read), or None."""
        return self.file.read_only

    def _create(self) -> None:
        """The folder, the private file and the schema (again, if the file was deleted).
        A store that exists but cannot be written is opened for reading only: a daemon
        keeps naming its speakers, and each write is refused in one line (storehealth)."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.file.read_only_now():
            with self._connect(fresh=True) as db:
                found = int(db.execute("SELECT value FROM meta WHERE key='schema'"
                                       ).fetchone()[0])
            if found != SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema {found}, this version reads "
                                 f"{SCHEMA_VERSION}, and a read-only store cannot be migrated")
            return
        self.file.create_private()
        with self._connect(fresh=True) as db:
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('generation', '0')",
                       (str(SCHEMA_VERSION),))
            found = int(db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0])
            if found == 1:
                self._migrate_from_1(db)
                found = SCHEMA_VERSION
        if found != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema {found}, this version reads {SCHEMA_VERSION}")

    def _migrate_from_1(self, db: sqlite3.Connection) -> None:
        """Schema 1 named each speaker's model by its tag alone: add the model file's
        hash, empty until a model file of that tag adopts the speaker (``Binding``)."""
        columns = [r[1] for r in db.execute("PRAGMA table_info(speakers)")]
        if "model_sha256" not in columns:
            db.execute("ALTER TABLE speakers ADD COLUMN model_sha256 TEXT")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
        n = db.execute("SELECT COUNT(*) FROM speakers").fetchone()[0]
        log.info("%s: store schema 1 migrated to %d (%d speakers kept; each is bound to a "
                 "model file by its sha256 when next used)", self.path, SCHEMA_VERSION, n)

    @contextmanager
    def _connect(self, fresh: bool = False) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: no connection is shared
        # between threads, and "with db" makes each operation one transaction.
        if not fresh and not self.path.exists():
            # Someone deleted the store under us: say so loudly, and start an empty
            # one rather than failing every request with "no such table".
            log.error("%s: the voiceprint store was deleted; starting an empty one", self.path)
            self._create()
        db = self.file.open()
        try:
            with db:
                yield db
        except sqlite3.DatabaseError as e:
            raise StoreError(explain(self.path, e)) from None
        finally:
            db.close()

    @property
    def location(self) -> str:
        return str(self.path)

    @contextmanager
    def transaction(self) -> Iterator[SqliteTx]:
        """One transaction on the store's file (``storeapi.Tx``), for the side tables
        (``provisional.py``, ``roomstore.py``) and the voiceprints' own rows."""
        with self._connect() as db:
            yield SqliteTx(db, self.location, self.read_only is None)

    def changed_since(self, since: int, upto: int) -> storechanges.Changes | None:
        """What changed since generation ``since`` (``storechanges``); None when the log
        cannot say (a read-only store of an older version may have none)."""
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM sqlite_master WHERE name = 'changes'").fetchone() \
                    is None:
                return None
            return storechanges.changed_since(tx, since, upto)

    def checkpoint(self) -> bool:
        """Copy the WAL into the store and truncate it, so that older page versions (a
        removed voiceprint's) are left in no file; False when a reader held it up."""
        return self.erasure.checkpoint()

    def after_erasure(self, what: str) -> None:
        """Rows of ``what`` were deleted through ``transaction()``: checkpoint now."""
        self.erasure.after_removal(what)

    def wait_for_change(self, timeout_s: float) -> bool:
        """No other writer tells a SQLite file's readers: sleep; the caller compares
        ``generation()``."""
        time.sleep(max(0.0, timeout_s))
        return False

    def close(self) -> None:
        """Nothing held: each operation opens and closes its own connection."""
