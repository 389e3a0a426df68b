"""The voiceprint store: speakers and their enrollment embeddings in SQLite.

A store is bound to the model that made its first enrollment; embeddings of
another model are refused, on write and on read, so scores never mix models.
Each enrollment is one transaction. A ``generation`` counter, bumped by every
write, lets a long-running reader notice changes cheaply.

Voiceprints are biometric data: a folder the store creates is 0700, the store
file 0600 whatever the umask (SQLite gives its ``-wal`` and ``-shm`` files the
same mode), and a store file of ours found more open is tightened. Deleted
rows are overwritten (``secure_delete``), and a removal ends with a WAL
checkpoint that truncates the log, so a removed voiceprint is left in no file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggvox.errors import ModelMismatchError, StoreError
from vggvox.scoring import voiceprint

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS speakers (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    speaker TEXT NOT NULL REFERENCES speakers(name) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    dim INTEGER NOT NULL,
    source TEXT NOT NULL,
    seconds REAL NOT NULL
);
"""


@dataclass(frozen=True)
class SpeakerInfo:
    name: str
    model: str
    embeddings: int
    seconds: float
    updated: float


def check_name(name: object) -> str:
    """A speaker name: non-empty printable text without surrounding spaces, in Unicode
    NFC form (so the NFC and NFD spellings of "José" are one speaker)."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError("speaker name must be a non-empty string")
    name = unicodedata.normalize("NFC", name)
    if name != name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise StoreError(
            f"speaker name {name[:40]!r} must be printable, at most {MAX_NAME_LENGTH} "
            "characters, without leading or trailing spaces"
        )
    return name


class VoiceprintStore:
    """SQLite-backed voiceprints. Safe to use from several threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._create()

    def _create(self) -> None:
        """The folder, the private file and the schema (again, if the file was deleted)."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._private_file()
        with self._connect(fresh=True) as db:
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema', ?), ('generation', '0')",
                (str(SCHEMA_VERSION),),
            )
            found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        if int(found) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema {found}, this version reads {SCHEMA_VERSION}")

    def _private_file(self) -> None:
        """Create the store file 0600 (before SQLite does, with the umask's mode)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open the store: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if st.st_uid == os.getuid() and st.st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    @contextmanager
    def _connect(self, fresh: bool = False) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: no connection is shared
        # between threads, and "with db" makes each operation one transaction.
        if not fresh and not self.path.exists():
            # Someone deleted the store under us: say so loudly, and start an empty
            # one rather than failing every request with "no such table".
            log.error("%s: the voiceprint store was deleted; starting an empty one", self.path)
            self._create()
        try:
            db = sqlite3.connect(self.path, timeout=10.0)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open the store: {e}") from None
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")  # never left to the build's default
            db.execute("PRAGMA journal_mode = WAL")
            with db:
                yield db
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path}: {e}") from None
        finally:
            db.close()

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )

    def model(self) -> str | None:
        """The model this store is bound to, or None while it is empty."""
        with self._connect() as db:
            row = db.execute("SELECT model FROM speakers LIMIT 1").fetchone()
        return row[0] if row else None

    def generation(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray,
        model: str,
        sources: list[str],
        seconds: list[float],
        replace: bool = False,
    ) -> SpeakerInfo:
        """Add embeddings to a speaker (or replace theirs), in one transaction."""
        name = check_name(name)
        emb = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if emb.shape[0] == 0 or not (len(sources) == len(seconds) == emb.shape[0]):
            raise StoreError("enroll needs one source and one duration per embedding")
        if not np.all(np.isfinite(emb)):
            raise StoreError(f"refusing non-finite embeddings for {name!r}")
        now = time.time()
        with self._connect() as db:
            other = db.execute(
                "SELECT model FROM speakers WHERE name != ? AND model != ? LIMIT 1", (name, model)
            ).fetchone()
            if other:
                raise ModelMismatchError(
                    f"{self.path} holds voiceprints of model {other[0]}; refusing to add "
                    f"{name!r} made by {model}. Use another store, or remove those speakers."
                )
            old = db.execute("SELECT model FROM speakers WHERE name = ?", (name,)).fetchone()
            if old and old[0] != model and not replace:
                raise ModelMismatchError(
                    f"{name!r} was enrolled with model {old[0]}, not {model}; use --replace"
                )
            if old and replace:
                db.execute("DELETE FROM speakers WHERE name = ?", (name,))
                old = None
            if old:
                db.execute("UPDATE speakers SET updated = ? WHERE name = ?", (now, name))
            else:
                db.execute("INSERT INTO speakers VALUES (?, ?, ?, ?)", (name, model, now, now))
            db.executemany(
                "INSERT INTO embeddings (speaker, vector, dim, source, seconds) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (name, e.tobytes(), e.shape[0], src, float(sec))
                    for e, src, sec in zip(emb, sources, seconds, strict=True)
                ],
            )
            self._bump(db)
        return self.speaker(name)

    def remove(self, name: str) -> bool:
        name = unicodedata.normalize("NFC", name)
        with self._connect() as db:
            gone = db.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount > 0
            if gone:
                self._bump(db)
        if gone:
            self.checkpoint()
        return gone

    def checkpoint(self) -> None:
        """Copy the WAL into the store and empty it: older page versions (a removed
        voiceprint's) leave the log. A reader holding an old snapshot keeps its
        frames until it ends; the next removal tries again."""
        with self._connect() as db:  # a PRAGMA opens no transaction
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def speaker(self, name: str) -> SpeakerInfo:
        name = unicodedata.normalize("NFC", name)
        found = self._infos("WHERE s.name = ?", (name,))
        if not found:
            raise StoreError(f"no speaker named {name!r}")
        return found[0]

    def speakers(self) -> list[SpeakerInfo]:
        return self._infos()

    def _infos(self, where: str = "", params: tuple[str, ...] = ()) -> list[SpeakerInfo]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.name, s.model, COUNT(e.id), COALESCE(SUM(e.seconds), 0), s.updated "
                f"FROM speakers s LEFT JOIN embeddings e ON e.speaker = s.name {where} "
                "GROUP BY s.name ORDER BY s.name",
                params,
            ).fetchall()
        return [SpeakerInfo(*r) for r in rows]

    def voiceprints(self, model: str) -> tuple[list[str], np.ndarray]:
        """Names and voiceprint matrix (speakers, dim), refusing another model's prints."""
        with self._connect() as db:
            others = db.execute(
                "SELECT DISTINCT model FROM speakers WHERE model != ?", (model,)
            ).fetchall()
            if others:
                raise ModelMismatchError(
                    f"{self.path} holds voiceprints of model {others[0][0]}; they cannot be "
                    f"scored with {model}. Re-enroll with {model} or use another store."
                )
            rows = db.execute(
                "SELECT speaker, vector, dim FROM embeddings ORDER BY speaker, id"
            ).fetchall()
        grouped: dict[str, list[np.ndarray]] = {}
        for name, blob, dim in rows:
            grouped.setdefault(name, []).append(np.frombuffer(blob, dtype=np.float32, count=dim))
        names = sorted(grouped)
        if not names:
            return [], np.zeros((0, 0), dtype=np.float32)
        return names, np.stack([voiceprint(np.stack(grouped[n])) for n in names])
