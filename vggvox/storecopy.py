"""Copying one store into another (``vggvox-client store migrate``): SQLite to
PostgreSQL, or back.

Everything a store holds goes: speakers with their model binding (tag and file
sha256), their embeddings, provisional voices (keeping their ``unknown-N``
numbers, which people were shown) and room calibrations. It is written in one
transaction on the target: all of it, or (an error) nothing. The source is only
read.

Refused, in one line, before anything is written: a target holding voiceprints or
provisional voices of another model (scores must never mix models), a source
holding several, and any speaker name, provisional number or room that both
stores hold (a copy does not merge two people into one).

Embedding ids are shifted past the target's own (a room's ``clips_after`` refers
to them, and is shifted alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vggvox.errors import ModelMismatchError, StoreError
from vggvox.provisional import _TABLE as PROVISIONAL_TABLE
from vggvox.roomstore import _TABLE as ROOMS_TABLE
from vggvox.storeapi import Store, Tx
from vggvox.storebinding import Binding, ModelId


@dataclass(frozen=True)
class Copied:
    speakers: int
    embeddings: int
    provisional: int
    rooms: int
    model: ModelId | None


@dataclass
class _Rows:
    speakers: list[Any]
    embeddings: list[Any]
    provisional: list[Any]
    rooms: list[Any]


def _read(src: Store) -> _Rows:
    with src.transaction() as tx:
        has_prov = tx.ensure_table("provisional", PROVISIONAL_TABLE)
        has_rooms = tx.ensure_table("rooms", ROOMS_TABLE)
        return _Rows(
            tx.execute("SELECT name, model, created, updated, model_sha256 FROM speakers "
                       "ORDER BY name").fetchall(),
            tx.execute(f"SELECT id, speaker, {tx.blob('vector')}, dim, source, seconds FROM "
                       "embeddings ORDER BY id").fetchall(),
            tx.execute(f"SELECT number, model, model_sha256, {tx.blob('total')}, dim, windows, "
                       "speech_s, first_heard, last_heard, places FROM provisional ORDER BY "
                       "number").fetchall() if has_prov else [],
            tx.execute("SELECT source, model_sha256, calibration, evidence, clips_after, "
                       "updated FROM rooms ORDER BY source").fetchall() if has_rooms else [])


def _model_of(src: Store, rows: _Rows) -> ModelId | None:
    """The one model the source's rows belong to (None: it holds none)."""
    found = {ModelId(r[1], r[4]) for r in rows.speakers} | \
        {ModelId(r[1], r[2]) for r in rows.provisional}
    tags = {m.tag for m in found}
    hashes = {m.sha256 for m in found} - {None}
    if len(tags) > 1 or len(hashes) > 1:
        raise ModelMismatchError(f"{src.location} holds voiceprints of several models "
                                 f"({', '.join(sorted(tags))}); nothing was copied")
    return ModelId(tags.pop(), hashes.pop() if hashes else None) if tags else None


def _refuse_clashes(db: Tx, rows: _Rows) -> None:
    def clash(table: str, column: str, values: list[Any], label: str) -> None:
        wanted = set(values)
        held = [v for (v,) in db.execute(f"SELECT {column} FROM {table}").fetchall()
                if v in wanted]
        if held:
            shown = ", ".join(label.format(v) for v in sorted(held)[:3])
            more = f" and {len(held) - 3} more" if len(held) > 3 else ""
            raise StoreError(f"{db.location} already holds {shown}{more}; nothing was copied "
                             "(remove them from one of the stores first)")

    clash("speakers", "name", [r[0] for r in rows.speakers], "speaker {!r}")
    clash("provisional", "number", [r[0] for r in rows.provisional], "unknown-{}")
    clash("rooms", "source", [r[0] for r in rows.rooms], "the room of source {!r}")


def copy_store(src: Store, dst: Store) -> Copied:
    """Copy everything ``src`` holds into ``dst`` in one transaction (see above)."""
    rows = _read(src)
    model = _model_of(src, rows)
    with dst.transaction() as db:
        db.ensure_table("provisional", PROVISIONAL_TABLE)
        db.ensure_table("rooms", ROOMS_TABLE)
        if model is not None:
            Binding(dst.location, db, model).refuse_others(
                f"refusing to copy voiceprints of {model} into it; nothing was copied")
            other = db.execute("SELECT model FROM provisional WHERE model != ? LIMIT 1",
                               (model.tag,)).fetchone()
            if other:
                raise ModelMismatchError(f"{dst.location} holds provisional voices of model "
                                         f"{other[0]}; refusing to copy {model}'s into it")
        _refuse_clashes(db, rows)
        _write(db, rows)
        db.bump_generation()
    return Copied(len(rows.speakers), len(rows.embeddings), len(rows.provisional),
                  len(rows.rooms), model)


def _write(db: Tx, rows: _Rows) -> None:
    offset = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0])
    db.executemany("INSERT INTO speakers (name, model, created, updated, model_sha256) "
                   "VALUES (?, ?, ?, ?, ?)", rows.speakers)
    db.executemany("INSERT INTO embeddings (id, speaker, vector, dim, source, seconds) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [(r[0] + offset, *r[1:]) for r in rows.embeddings])
    db.executemany("INSERT INTO provisional (number, model, model_sha256, total, dim, windows, "
                   "speech_s, first_heard, last_heard, places) VALUES "
                   "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.provisional)
    db.executemany("INSERT INTO rooms (source, model_sha256, calibration, evidence, "
                   "clips_after, updated) VALUES (?, ?, ?, ?, ?, ?)",
                   [(*r[:4], r[4] + offset, r[5]) for r in rows.rooms])
    if db.dialect == "postgresql":  # identity columns: the next ids after those copied
        for table, column in (("embeddings", "id"), ("provisional", "number")):
            db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                       f"GREATEST((SELECT MAX({column}) FROM {table}), 1))")
