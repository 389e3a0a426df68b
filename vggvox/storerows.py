"""The voiceprint tables' rows, read and written the same way on every backend.

``store.VoiceprintStore`` (SQLite) and ``store_pg.PgStore`` (PostgreSQL) hold the
same two tables, ``speakers`` and ``embeddings``, and run these functions in a
transaction of their own (a ``storeapi.Tx``), so the rules (model binding, the
confusable names, replace) are written once.

``enroll_all``'s checks cost O(existing + new) per transaction: the names (and
their skeletons) and the other model's rows are read once (``LookAlikes``,
``Binding.foreign``), and a new speaker costs no query of its own: the new rows
are written together at the end (an existing speaker's, at once).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vggvox.errors import StoreError
from vggvox.modelcard import ModelCard
from vggvox.names import LookAlikes, check_name
from vggvox.scoring import l2_normalize
from vggvox.storeapi import Tx
from vggvox.storebinding import Binding, ModelId
from vggvox.storechanges import chunks, placeholders
from vggvox.storehealth import DamagedRow, sort_rows


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


@dataclass
class _Pending:
    """New rows, sent together at the end (``executemany``: one round trip's worth on
    PostgreSQL, in pipeline mode, not one per speaker)."""

    speakers: list[tuple[object, ...]] = field(default_factory=list)
    embeddings: list[tuple[object, ...]] = field(default_factory=list)

    def flush(self, db: Tx) -> None:
        if self.speakers:
            db.executemany("INSERT INTO speakers (name, model, created, updated, model_sha256) "
                           "VALUES (?, ?, ?, ?, ?)", self.speakers)
        if self.embeddings:
            db.executemany("INSERT INTO embeddings (speaker, vector, dim, source, seconds) "
                           "VALUES (?, ?, ?, ?, ?)", self.embeddings)
        self.speakers, self.embeddings = [], []


class HeldNames:
    """A store's names and their look-alike index (``names.LookAlikes``), kept between
    its transactions: each brings it up to the names in the table (those removed or
    rolled back since are dropped, those another writer added are added), so an
    enrollment into a store of 100,000 computes the skeletons of the names that changed,
    not of all (0.3-0.5 s). ``lock`` is held for a transaction's checks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: set[str] = set()
        self.alikes = LookAlikes()

    def as_held(self, held: list[str]) -> tuple[LookAlikes, set[str]]:
        now = set(held)
        for name in self.names - now:
            self.alikes.discard(name)
        for name in now - self.names:
            self.alikes.add(name)
        self.names = now
        return self.alikes, now


def enroll_all(db: Tx, checked: Sequence[NewPrints], model: str | ModelId | ModelCard,
               now: float, replace: bool, force: bool, held: HeldNames | None = None) -> None:
    """Write already ``checked`` speakers in the open transaction ``db`` (the caller
    commits, and bumps the generation); ``held``: the store's names as its last
    transaction left them (None: computed afresh)."""
    bind = Binding(db.location, db, model)
    table = [r[0] for r in db.execute("SELECT name FROM speakers").fetchall()]
    held = held or HeldNames()
    with held.lock:
        names, stored = held.as_held(table)  # this transaction's changes go into both
        pending = _Pending()
        for new in checked:
            _enroll_one(db, bind, names, stored, pending, new, now, replace, force)
    pending.flush(db)
    # Once for the transaction: new rows already carry the hash, so only rows
    # that were there before can still be known by tag alone.
    bind.adopt()


def _enroll_one(db: Tx, bind: Binding, names: LookAlikes, stored: set[str], pending: _Pending,
                new: NewPrints, now: float, replace: bool, force: bool) -> None:
    """One speaker's checks, and their rows added to ``pending``; ``stored``: the names
    in the table, this batch's included."""
    name = new.name
    bind.refuse_others(f"refusing to add {name!r} made by {bind.model}. Use another "
                       "store, or remove those speakers.", besides=name)
    if name in stored:
        pending.flush(db)  # a name twice in one batch: its first rows are in the table
        if replace:
            db.execute("DELETE FROM speakers WHERE name = ?", (name,))
            bind.deleted(name)
            stored.discard(name)
            names.discard(name)
        else:
            bind.refuse_speaker(name)
            db.execute("UPDATE speakers SET updated = ? WHERE name = ?", (now, name))
    if name not in stored:
        names.refuse(name, force)
        pending.speakers.append((name, bind.model.tag, now, now, bind.sha256_for_new_rows()))
        stored.add(name)
    pending.embeddings.extend(
        (name, e.tobytes(), int(e.shape[0]), src, float(sec))
        for e, src, sec in zip(new.embeddings, new.sources, new.seconds, strict=True))


def infos(db: Tx, name: str | None = None) -> list[SpeakerInfo]:
    """Every speaker's summary (or ``name``'s alone), by name."""
    where = "" if name is None else "WHERE s.name = ?"
    rows = db.execute(
        "SELECT s.name, s.model, COUNT(e.id), COALESCE(SUM(e.seconds), 0), s.updated "
        f"FROM speakers s LEFT JOIN embeddings e ON e.speaker = s.name {where} "
        "GROUP BY s.name, s.model, s.updated ORDER BY s.name",
        () if name is None else (name,),
    ).fetchall()
    return [SpeakerInfo(r[0], r[1], int(r[2]), float(r[3]), float(r[4])) for r in rows]


def read_prints(db: Tx, model: str | ModelId | ModelCard, only: Sequence[str] | None,
                adopt: bool) -> tuple[list[str], np.ndarray, list[DamagedRow]]:
    """Each sound speaker's voiceprint (or those of the speakers named in ``only``), by
    name, refusing another model's, and the damaged speakers left out
    (``storehealth.sort_rows``)."""
    bind = Binding(db.location, db, model)
    reason = (f"they cannot be scored with {bind.model}. Re-enroll with "
              f"{bind.model.tag} or use another store.")
    if only is None:
        bind.refuse_others(reason)
    else:
        for name in only:
            bind.refuse_speaker(name)
    if adopt:  # else (read-only) the rows stay known by their tag alone
        bind.adopt()
    query = f"SELECT id, speaker, {db.blob('vector')}, dim FROM embeddings "
    if only is None:
        rows = db.execute(query + "ORDER BY speaker, id").fetchall()
    else:
        rows = []
        for part in chunks(sorted(set(only))):
            rows += db.execute(query + f"WHERE speaker IN ({placeholders(part)}) "
                               "ORDER BY speaker, id", part).fetchall()
    expected = ModelId.coerce(model).dim
    sound = _sound(rows, expected)
    if sound is not None:
        return (*sound, [])
    grouped, damaged = sort_rows(db.location, rows, expected)
    return (*stacked(grouped), damaged)


def _sound(rows: list[Any], dim: int | None) -> tuple[list[str], np.ndarray] | None:
    """Names and voiceprints of rows (id, speaker, vector, dim) in order of speaker when
    every row is a sound vector of ``dim`` values, at numpy's pace (one array, not one
    per row: 5 s at 100,000 speakers); None: let ``sort_rows`` find the damaged ones."""
    if not rows or dim is None or dim <= 0:
        return None
    size = 4 * dim
    if not all(type(b) is bytes and len(b) == size and d == dim for _, _, b, d in rows):
        return None
    matrix = np.frombuffer(b"".join([r[2] for r in rows]), dtype=np.float32).reshape(-1, dim)
    if not (np.isfinite(matrix).all() and matrix.any(axis=1).all()):
        return None
    speakers = [r[1] for r in rows]
    starts = [0] + [i for i in range(1, len(speakers)) if speakers[i] != speakers[i - 1]]
    names = [speakers[i] for i in starts]
    if len(set(names)) != len(names):
        return None  # a speaker's rows not together (a collation of the database's)
    prints = voiceprints(matrix, np.asarray(starts, dtype=np.int64))
    order = sorted(range(len(names)), key=names.__getitem__)  # Python's order, as stacked's
    return [names[i] for i in order], prints[order]


def voiceprints(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``scoring.voiceprint`` of each group of rows (group i: rows ``starts[i]`` up to
    the next start), all at once: the same float32 operations in the same order, so the
    same bits (tests/test_storechanges.py)."""
    unit = l2_normalize(rows)
    counts = np.diff(np.append(starts, len(rows)))
    # Each group's rows added one after another, as numpy's mean over a speaker's rows
    # does (np.add.reduceat adds in another order: the last bit differs); step j adds
    # the j-th row of the groups that have one, so the work is one pass over the rows.
    if len(starts) == len(rows):  # one row each (the mean of one row is that row)
        return l2_normalize(unit)
    sums = unit[starts]
    active = np.arange(len(starts))
    for j in range(1, int(counts.max(initial=1))):
        active = active[counts[active] > j]
        sums[active] += unit[starts[active] + j]
    # float32 / count, correctly rounded, as numpy's mean gives it
    return l2_normalize(sums / counts[:, None].astype(np.float32))


def stacked(grouped: dict[str, list[np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """Names and voiceprint matrix (speakers, dim) of each speaker's vectors."""
    names = sorted(grouped)
    if not names:
        return [], np.zeros((0, 0), dtype=np.float32)
    counts = np.fromiter((len(grouped[n]) for n in names), dtype=np.int64, count=len(names))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return names, voiceprints(np.stack([v for n in names for v in grouped[n]]), starts)
