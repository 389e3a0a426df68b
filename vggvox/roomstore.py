"""Each source's room, kept in the voiceprint store: it survives a restart.

A ``rooms`` table beside the voiceprints holds, per source, the evidence a
``Room`` heard (``vggvox.rooms.Evidence``, as JSON), with the model file's hash
and the calibration it was measured against: evidence is z against one
calibration's tail, so a store moved to another model, or a source given
another calibration, starts that room afresh (the old row is discarded, and
that is logged). Saving never bumps the store's generation: the voiceprints
did not change.

Enrollment clips say where they were recorded in their ``source`` tag: a live
enrollment's is ``<source>:live``, a named unknown voice's ``<source>:<label>``,
clips declared as recorded on a source ``<source>:clipN``. ``channel_clips``
finds a source's.

Both backends (``storeapi.Tx``): on SQLite the table is created on first use; on
PostgreSQL the store's schema migrations made it (``store_pgschema.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import numpy as np

from vggvox.calibration import Calibration
from vggvox.rooms import Evidence
from vggvox.storeapi import Store

log = logging.getLogger(__name__)

_TABLE = """CREATE TABLE IF NOT EXISTS rooms (
    source TEXT PRIMARY KEY,
    model_sha256 TEXT NOT NULL,
    calibration TEXT NOT NULL,
    evidence TEXT NOT NULL,
    clips_after INTEGER NOT NULL,
    updated REAL NOT NULL
)"""


def calibration_key(cal: Calibration) -> str:
    """What a room's evidence depends on: the calibration's fitted numbers."""
    text = json.dumps(cal.as_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(store: Store, source: str, model_sha256: str, cal: Calibration
         ) -> tuple[Evidence, int] | None:
    """The heard evidence stored for ``source`` with this model and calibration, and the
    last enrollment clip a reset set aside; None when there is none. A row for another
    model or calibration, or one that does not read, is dropped."""
    with store.transaction() as db:
        if not db.ensure_table("rooms", _TABLE):
            return None
        row = db.execute("SELECT model_sha256, calibration, evidence, clips_after FROM rooms "
                         "WHERE source = ?", (source,)).fetchone()
    if row is None:
        return None
    why = ("it was measured with another model" if row[0] != model_sha256 else
           "it was measured against another calibration" if row[1] != calibration_key(cal)
           else None)
    if why is None:
        try:
            return Evidence.from_dict(json.loads(row[2])), int(row[3])
        except ValueError as e:
            why = str(e)
    log.warning("%s: source %s's room is discarded: %s", store.location, source, why)
    if store.read_only is None:
        forget(store, source)
    return None


def save(store: Store, source: str, model_sha256: str, cal: Calibration,
         evidence: dict[str, object], clips_after: int) -> None:
    with store.transaction() as db:
        db.ensure_table("rooms", _TABLE)
        db.execute("INSERT INTO rooms (source, model_sha256, calibration, evidence, "
                   "clips_after, updated) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO "
                   "UPDATE SET model_sha256 = excluded.model_sha256, calibration = "
                   "excluded.calibration, evidence = excluded.evidence, clips_after = "
                   "excluded.clips_after, updated = excluded.updated",
                   (source, model_sha256, calibration_key(cal), json.dumps(evidence),
                    clips_after, time.time()))


def forget(store: Store, source: str) -> None:
    with store.transaction() as db:
        if db.ensure_table("rooms", _TABLE):
            db.execute("DELETE FROM rooms WHERE source = ?", (source,))


def last_clip(store: Store) -> int:
    """The id of the newest enrollment clip (0: none): a reset sets aside those up to it."""
    with store.transaction() as db:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM embeddings").fetchone()[0])


def channel_clips(store: Store, source: str, dim: int, after: int = 0
                  ) -> list[tuple[str, float, np.ndarray]]:
    """(speaker, seconds, embedding) of each enrollment clip recorded on ``source``, newer
    than clip ``after``. A row that does not read as a vector of ``dim`` is left out
    (the voiceprints' own read reports it)."""
    prefix = f"{source}:"
    with store.transaction() as db:
        rows = db.execute(f"SELECT speaker, seconds, {db.blob('vector')} FROM embeddings "
                          "WHERE substr(source, 1, CAST(? AS INTEGER)) = ? AND id > ? "
                          "ORDER BY id",
                          (len(prefix), prefix, after)).fetchall()
    return [(speaker, float(seconds), np.frombuffer(blob, dtype=np.float32))
            for speaker, seconds, blob in rows
            if isinstance(blob, bytes) and len(blob) == 4 * dim]
