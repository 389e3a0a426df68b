"""Provisional voices: unknown voices remembered from one recording to the next.

``identify --remember`` keeps each unknown voice of a recording in the store as
a provisional voice, ``unknown-N``, so that the same voice in a later recording
gets the same label. They live in the voiceprint store's file, in a table of
their own (``provisional``, created on open; the enrolled speakers' tables are
untouched), so they are never read as enrolled speakers: ``VoiceprintStore``'s
``voiceprints()`` and ``speakers()`` never see them, and no open-set decision
counts them. Writing one does not bump the store's generation, since the
enrolled voiceprints a daemon scores with did not change; ``promote`` enrolls
through the store, which does.

A voice holds the sum of its window embeddings (its voiceprint is that sum,
normalised), its windows and seconds of speech, when it was first and last
heard, and where (the latest ``MAX_PLACES`` recordings). N comes from the
table's AUTOINCREMENT counter, which SQLite never reuses, so a forgotten
label never names another voice. A voice belongs to the model file that made
it (``ModelId``): another model's voices are refused, as speakers are.

Which remembered voice a heard one is: ``provisional_match.py``, calibrated like
the daemon's unknown clusters. Names suggested and confirmed (``promote``):
``provisional_names.py``.

Bounded: at most ``max_voices``; the one heard longest ago is erased first.
Every erasure (bound, ``forget``, ``promote``) is the store's
(``Store.after_erasure``): on SQLite ``secure_delete`` overwrites the row, and a
WAL checkpoint drops its older versions, or says the erasure is pending while a
reader holds it up (``erasure.py``); on PostgreSQL the table is vacuumed.

Both backends: the voices are read and written through ``Store.transaction()``
(a ``storeapi.Tx``) in SQL both accept. On PostgreSQL the table comes from the
store's schema migrations (``store_pgschema.py``; ``number`` an identity column,
never reused either), and a write holds the table locked (``Tx.lock``) as
SQLite's BEGIN IMMEDIATE holds the file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import numpy as np

from vggvox import provisional_names
from vggvox.calibration import AcceptRule
from vggvox.errors import ModelMismatchError, StoreError
from vggvox.modelcard import ModelCard
from vggvox.provisional_match import HeardVoice, assign
from vggvox.recording.segments import UNKNOWN_PREFIX
from vggvox.scoring import l2_normalize
from vggvox.storeapi import Store, Tx
from vggvox.storebinding import Binding, ModelId
from vggvox.storerows import SpeakerInfo

__all__ = ["MAX_PLACES", "HeardVoice", "Place", "ProvisionalVoice", "ProvisionalVoices",
           "label_number"]

log = logging.getLogger(__name__)

MAX_PLACES = 20
"""Recordings remembered per voice, the latest kept."""

_TABLE = """CREATE TABLE IF NOT EXISTS provisional (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    model_sha256 TEXT,
    total BLOB NOT NULL,
    dim INTEGER NOT NULL,
    windows INTEGER NOT NULL,
    speech_s REAL NOT NULL,
    first_heard REAL NOT NULL,
    last_heard REAL NOT NULL,
    places TEXT NOT NULL
)"""


@dataclass(frozen=True)
class Place:
    """One recording a voice was heard in."""

    recording: str
    heard: float
    """When it was remembered (Unix time)."""
    start: float
    end: float
    """Its first and last second of speech in the recording."""
    speech_s: float


@dataclass(frozen=True)
class ProvisionalVoice:
    label: str
    model: ModelId
    total: np.ndarray
    windows: int
    speech_s: float
    first_heard: float
    last_heard: float
    places: tuple[Place, ...]

    @property
    def centroid(self) -> np.ndarray:
        return l2_normalize(self.total)

    def as_dict(self) -> dict[str, object]:
        """For lists and JSON: everything but the vector."""
        return {"label": self.label, "model": self.model.tag, "windows": self.windows,
                "speech_s": round(self.speech_s, 2), "first_heard": self.first_heard,
                "last_heard": self.last_heard, "places": [asdict(p) for p in self.places]}


def label_number(label: str) -> int | None:
    """N of ``unknown-N`` (None: not such a label)."""
    m = re.fullmatch(re.escape(UNKNOWN_PREFIX) + r"([1-9][0-9]{0,17})", label.strip())
    return int(m.group(1)) if m else None


class ProvisionalVoices:
    """The provisional voices of ``model`` in ``store``."""

    def __init__(self, store: Store, model: str | ModelId | ModelCard,
                 max_voices: int = 200) -> None:
        if max_voices < 1:
            raise ValueError(f"max_voices must be at least 1, got {max_voices}")
        self.store = store
        self.model = ModelId.coerce(model)
        self.card = model if isinstance(model, ModelCard) else None
        self.max_voices = max_voices
        if store.read_only is None:
            with self._db():
                pass  # the table, created now

    @classmethod
    def of_any_model(cls, store: Store) -> ProvisionalVoices:
        """For ``list``, ``get`` and ``forget`` alone: every voice is another model's to
        it, so it matches, remembers and promotes none."""
        return cls(store, ModelId(""))

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Tx | None]:
        """One transaction with the table (None: a read-only store that has none).
        The table is ensured each time: a store deleted under us comes back without it."""
        with self.store.transaction() as db:
            if write:
                db.lock("provisional")  # what was matched is what gets updated
            if not db.ensure_table("provisional", _TABLE):
                yield None
                return
            yield db

    # -- reading ------------------------------------------------------------------------------

    def get(self, label: str) -> ProvisionalVoice | None:
        n = label_number(label)
        with self._db() as db:
            found = [] if db is None or n is None else self._rows(db, n)
        return found[0] if found else None

    def _rows(self, db: Tx, number: int | None = None
              ) -> list[ProvisionalVoice]:
        where = "" if number is None else "WHERE number = ?"
        rows = db.execute(f"SELECT number, model, model_sha256, {db.blob('total')}, windows, "
                          f"speech_s, first_heard, last_heard, places FROM provisional {where} "
                          "ORDER BY number",
                          () if number is None else (number,)).fetchall()
        out = []
        for n, tag, sha, blob, windows, speech, first, last, places in rows:
            try:
                total = np.frombuffer(blob, dtype=np.float32).copy()
                where_heard = tuple(Place(**p) for p in json.loads(places))
            except (TypeError, ValueError) as e:  # not ours, or damaged: say which
                raise StoreError(f"{self.store.location}: provisional voice {UNKNOWN_PREFIX}{n} "
                                 f"is damaged ({e}); forget it") from None
            out.append(ProvisionalVoice(f"{UNKNOWN_PREFIX}{n}", ModelId(tag, sha), total,
                                        windows, speech, first, last, where_heard))
        return out

    def foreign(self, voice: ProvisionalVoice) -> bool:
        """Made by another model: another tag, or (both known) another file."""
        other = voice.model
        return other.tag != self.model.tag or (
            None not in (other.sha256, self.model.sha256) and other.sha256 != self.model.sha256)

    def _mine(self, db: Tx | None) -> list[ProvisionalVoice]:
        """This model's voices; ModelMismatchError if the store holds another's."""
        voices = [] if db is None else self._rows(db)
        for v in voices:
            if self.foreign(v):
                raise ModelMismatchError(
                    f"{self.store.location} holds provisional voices of model {v.model}; they "
                    f"cannot be compared with {self.model}. Forget them or use another store.")
            if self.model.dim is not None and len(v.total) != self.model.dim:
                raise StoreError(f"{self.store.location}: provisional voice {v.label} is damaged "
                                 f"(a vector of {len(v.total)} values); forget it")
        return voices

    # -- matching and remembering ------------------------------------------------------------------

    def match(self, centroids: np.ndarray | Sequence[np.ndarray], speech_s: Sequence[float],
              rule: AcceptRule) -> list[str | None]:
        """The provisional label of each of a recording's unknown voices (None: new)."""
        with self._db() as db:
            voices = self._mine(db)
        return [None if j is None else voices[j].label
                for j in assign(voices, centroids, speech_s, rule)]

    def remember(self, recording: str, voices: Sequence[HeardVoice],
                 rule: AcceptRule) -> list[str]:
        """Write a recording's unknown voices (matched ones updated, new ones labelled
        with the next N), in one transaction; their labels, in order. Then, over
        ``max_voices``, the ones heard longest ago are erased."""
        heard = [self._checked(h) for h in voices]
        now = time.time()
        with self._db(write=True) as db:
            assert db is not None  # a read-only store refused BEGIN IMMEDIATE already
            Binding(self.store.location, db, self.model).refuse_others(
                f"refusing to remember voices made by {self.model}. Use another store.")
            if self.model.sha256 is not None:  # rows written by tag alone: bound now
                db.execute("UPDATE provisional SET model_sha256 = ? WHERE model_sha256 IS "
                           "NULL AND model = ?", (self.model.sha256, self.model.tag))
            known = self._mine(db)
            picks = assign(known, [h.centroid for h in heard], [h.speech_s for h in heard],
                           rule)
            labels = [self._write(db, recording, h, None if j is None else known[j], now)
                      for h, j in zip(heard, picks, strict=True)]
            evicted = self._over_bound(db, set(labels))
        if evicted:
            log.info("%s: %d provisional voice(s) heard longest ago forgotten (at most %d "
                     "kept): %s", self.store.location, len(evicted), self.max_voices,
                     ", ".join(evicted))
            self.store.after_erasure(", ".join(evicted))
        return labels

    def _checked(self, h: HeardVoice) -> HeardVoice:
        total = np.asarray(h.total, dtype=np.float32)
        if total.ndim != 1 or (self.model.dim is not None and len(total) != self.model.dim):
            size = self.model.dim or "the model's"
            raise StoreError(f"a heard voice needs one vector of {size} values, got shape "
                             f"{total.shape}")
        if not np.all(np.isfinite(total)) or h.windows < 1 or not h.speech_s >= 0:
            raise StoreError("refusing a heard voice with non-finite values or no windows")
        return replace(h, total=total)

    def _write(self, db: Tx, recording: str, h: HeardVoice,
               old: ProvisionalVoice | None, now: float) -> str:
        place = Place(recording, now, round(h.start, 3), round(h.end, 3), round(h.speech_s, 3))
        if old is None:
            number = db.execute(
                "INSERT INTO provisional (model, model_sha256, total, dim, windows, speech_s, "
                "first_heard, last_heard, places) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "RETURNING number",
                (self.model.tag, self.model.sha256, h.total.tobytes(), len(h.total),
                 h.windows, h.speech_s, now, now, json.dumps([asdict(place)]))).fetchone()[0]
            return f"{UNKNOWN_PREFIX}{number}"
        places = [asdict(p) for p in (*old.places, place)][-MAX_PLACES:]
        db.execute("UPDATE provisional SET total = ?, windows = ?, speech_s = ?, last_heard = ?, "
                   "places = ? WHERE number = ?",
                   ((old.total + h.total).astype(np.float32).tobytes(), old.windows + h.windows,
                    old.speech_s + h.speech_s, now, json.dumps(places), label_number(old.label)))
        return old.label

    def _over_bound(self, db: Tx, keep: set[str]) -> list[str]:
        """Delete the voices over ``max_voices``: heard longest ago first, this
        recording's last (only a recording with more voices than that loses its own)."""
        rows = db.execute("SELECT number, last_heard FROM provisional").fetchall()
        excess = len(rows) - self.max_voices
        if excess <= 0:
            return []
        rows.sort(key=lambda r: (f"{UNKNOWN_PREFIX}{r[0]}" in keep, r[1], r[0]))
        gone = [r[0] for r in rows[:excess]]
        db.executemany("DELETE FROM provisional WHERE number = ?", [(n,) for n in gone])
        return [f"{UNKNOWN_PREFIX}{n}" for n in gone]

    # -- forgetting ------------------------------------------------------------------------------

    def forget(self, label: str) -> bool:
        """Erase one provisional voice, of any model (``store.erasure_pending`` says
        whether a reader held the erasure up)."""
        n = label_number(label)
        if n is None:
            return False
        with self._db(write=True) as db:
            gone = db is not None and db.execute(
                "DELETE FROM provisional WHERE number = ?", (n,)).rowcount > 0
        if gone:
            self.store.after_erasure(label)
        return gone

    def forget_older_than(self, seconds: float) -> list[str]:
        """Erase every provisional voice (any model's) last heard more than ``seconds``
        ago; their labels."""
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        with self._db(write=True) as db:
            if db is None:
                return []
            rows = db.execute("SELECT number FROM provisional WHERE last_heard < ? ORDER BY "
                              "number", (time.time() - seconds,)).fetchall()
            db.executemany("DELETE FROM provisional WHERE number = ?", rows)
        labels = [f"{UNKNOWN_PREFIX}{n}" for (n,) in rows]
        if labels:
            self.store.after_erasure(", ".join(labels))
        return labels

    # -- names: suggested, then confirmed (provisional_names.py) -----------------------------

    def suggest(self, centroid: np.ndarray, speech_s: float,
                voiceprints: tuple[Sequence[str], np.ndarray], rule: AcceptRule
                ) -> tuple[str, float] | None:
        """The enrolled speaker (name, score) a voice scores close to (``suggest``)."""
        return provisional_names.suggest(centroid, speech_s, voiceprints, rule)

    def promote(self, label: str, name: str, rule: AcceptRule, *, replace: bool = False,
                force: bool = False) -> SpeakerInfo:
        """Enroll a provisional voice as ``name`` with the usual checks, then erase it
        (``provisional_names.promote``)."""
        return provisional_names.promote(self, label, name, rule, replace, force)

    # last: below it, 'list' in an annotation would name this method
    def list(self) -> list[ProvisionalVoice]:
        """Every provisional voice, of any model, oldest label first."""
        with self._db() as db:
            return [] if db is None else self._rows(db)
