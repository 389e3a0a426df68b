"""The voiceprint store: speakers and their enrollment embeddings in SQLite.

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
store says so and finishes it later (``erasure.py``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggvox.erasure import Erasure
from vggvox.errors import StoreError
from vggvox.modelcard import ModelCard
from vggvox.names import MAX_NAME_LENGTH, LookAlikes, check_name
from vggvox.scoring import voiceprint
from vggvox.storebinding import Binding, ModelId
from vggvox.storefile import StoreFile
from vggvox.storehealth import DamagedRow, explain, sort_rows

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
"""


@dataclass(frozen=True)
class SpeakerInfo:
    name: str
    model: str
    """The model's readable tag (name@version)."""
    embeddings: int
    seconds: float
    updated: float


@dataclass(frozen=True)
class NewPrints:
    """One speaker's new embeddings (rows), each with its source and speech seconds."""

    name: str
    embeddings: np.ndarray
    sources: list[str]
    seconds: list[float]

    def checked(self) -> NewPrints:
        """The embeddings as float32 rows; StoreError if they cannot be stored."""
        name = check_name(self.name)
        emb = np.atleast_2d(np.asarray(self.embeddings, dtype=np.float32))
        if emb.shape[0] == 0 or not (len(self.sources) == len(self.seconds) == emb.shape[0]):
            raise StoreError("enroll needs one source and one duration per embedding")
        if not np.all(np.isfinite(emb)):
            raise StoreError(f"refusing non-finite embeddings for {name!r}")
        return NewPrints(name, emb, self.sources, self.seconds)


class VoiceprintStore:
    """SQLite-backed voiceprints. Safe to use from several threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.erasure = Erasure(self.path, lambda: self._connect())
        self.damaged: list[DamagedRow] = []
        """The damaged speakers the last read of the voiceprints left out (storehealth.py)."""
        self._reported: set[DamagedRow] = set()
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

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One transaction on the store's file, for a table of its own (``roomstore.py``)."""
        return self._connect()

    @staticmethod
    def _bump(db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )

    def model(self) -> str | None:
        """The tag of the model this store is bound to, or None while it is empty."""
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
        model: str | ModelId | ModelCard,
        sources: list[str],
        seconds: list[float],
        replace: bool = False,
        force: bool = False,
    ) -> SpeakerInfo:
        """Add embeddings to a speaker (or replace theirs), in one transaction.

        ``model``: the ``ModelId`` (or card) that made them; a bare tag string is
        checked by tag only. A new name confusable with an enrolled speaker's is
        refused (ConfusableNameError) unless ``force``."""
        self.enroll_many([NewPrints(name, embeddings, sources, seconds)], model, replace, force)
        return self.speaker(name)

    def enroll_many(self, speakers: Sequence[NewPrints], model: str | ModelId | ModelCard,
                    replace: bool = False, force: bool = False) -> None:
        """``enroll`` for several speakers, in one transaction: all are enrolled, or
        (an error) none. One commit instead of one each: batch-offline's 280 speakers
        took 1.1 s one at a time."""
        checked = [s.checked() for s in speakers]
        now = time.time()
        with self._connect() as db:
            bind = Binding(self.path, db, model)
            names = LookAlikes(r[0] for r in db.execute("SELECT name FROM speakers"))
            for new in checked:
                self._enroll_in(db, bind, names, new, now, replace, force)
            # Once for the transaction: new rows already carry the hash, so only rows
            # that were there before can still be known by tag alone.
            bind.adopt()
            self._bump(db)

    def _enroll_in(self, db: sqlite3.Connection, bind: Binding, names: LookAlikes,
                   new: NewPrints, now: float, replace: bool, force: bool) -> None:
        name = new.name
        bind.refuse_others(f"refusing to add {name!r} made by {bind.model}. Use another "
                           "store, or remove those speakers.", besides=name)
        old = db.execute("SELECT 1 FROM speakers WHERE name = ?", (name,)).fetchone()
        if old and replace:
            db.execute("DELETE FROM speakers WHERE name = ?", (name,))
            old = None
        if old:
            bind.refuse_speaker(name)
            db.execute("UPDATE speakers SET updated = ? WHERE name = ?", (now, name))
        else:
            names.refuse(name, force)
            db.execute("INSERT INTO speakers VALUES (?, ?, ?, ?, ?)",
                       (name, bind.model.tag, now, now, bind.sha256_for_new_rows()))
        db.executemany(
            "INSERT INTO embeddings (speaker, vector, dim, source, seconds) "
            "VALUES (?, ?, ?, ?, ?)",
            [(name, e.tobytes(), e.shape[0], src, float(sec))
             for e, src, sec in zip(new.embeddings, new.sources, new.seconds, strict=True)],
        )

    def remove(self, name: str) -> bool:
        """Remove a speaker and erase their vectors from the store's files (see
        ``erasure_pending`` for whether that could finish yet)."""
        name = unicodedata.normalize("NFC", name)
        with self._connect() as db:
            gone = db.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount > 0
            if gone:
                self._bump(db)
        if gone:
            self.erasure.after_removal(name)
        return gone

    @property
    def erasure_pending(self) -> bool:
        """A removed speaker's vectors may still be in the store's files (WAL or old pages)."""
        return self.erasure.pending

    def retry_erasure(self) -> bool:
        """Finish a pending erasure if the reader that held it up is gone (at most once a
        second); True when none is pending. No I/O when none is: call it from any loop."""
        return self.erasure.retry()

    def checkpoint(self) -> bool:
        """Copy the WAL into the store and truncate it, so that older page versions (a
        removed voiceprint's) are left in no file; False when a reader held it up."""
        return self.erasure.checkpoint()

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

    def voiceprints(self, model: str | ModelId | ModelCard) -> tuple[list[str], np.ndarray]:
        """Names and voiceprint matrix (speakers, dim), refusing another model's prints."""
        return self._prints(model, None)

    def voiceprint_of(self, name: str, model: str | ModelId | ModelCard) -> np.ndarray | None:
        """One speaker's voiceprint (None: no such speaker), refusing another model's."""
        names, prints = self._prints(model, unicodedata.normalize("NFC", name))
        return prints[0] if names else None

    def _report(self, damaged: list[DamagedRow]) -> None:
        """Log each damaged speaker once (a daemon re-reads the store after every change)."""
        self.damaged = damaged
        for d in damaged:
            if d not in self._reported:
                log.error("%s", d)
        self._reported = set(damaged)

    def _prints(self, model: str | ModelId | ModelCard,
                only: str | None) -> tuple[list[str], np.ndarray]:
        with self._connect() as db:
            bind = Binding(self.path, db, model)
            reason = (f"they cannot be scored with {bind.model}. Re-enroll with "
                      f"{bind.model.tag} or use another store.")
            if only is None:
                bind.refuse_others(reason)
            else:
                bind.refuse_speaker(only)
            if self.read_only is None:  # else the rows stay known by their tag alone
                bind.adopt()
            rows = db.execute(
                # As a BLOB whatever its type: a damaged row may hold text, even text
                # that is not UTF-8, which Python's sqlite3 would fail to decode.
                "SELECT id, speaker, CAST(vector AS BLOB), dim FROM embeddings "
                + ("" if only is None else "WHERE speaker = ? ") + "ORDER BY speaker, id",
                () if only is None else (only,),
            ).fetchall()
        grouped, damaged = sort_rows(self.path, rows, ModelId.coerce(model).dim)
        if only is not None and damaged:
            raise StoreError(str(damaged[0]))
        self._report(damaged)
        names = sorted(grouped)
        if not names:
            return [], np.zeros((0, 0), dtype=np.float32)
        return names, np.stack([voiceprint(np.stack(grouped[n])) for n in names])
