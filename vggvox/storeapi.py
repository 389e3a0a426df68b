"""What every voiceprint store offers, whichever database holds it.

Two backends implement ``Store``: ``store.VoiceprintStore`` (a SQLite file, the
default) and ``store_pg.PgStore`` (PostgreSQL, shared by several daemons).
``storeopen.open_store`` picks one from a path or URL. Callers use only these
names, so a daemon or a command works on either.

Side tables (provisional voices, ``provisional.py``; room calibrations,
``roomstore.py``) work on both through ``Store.transaction()``, which yields a
``Tx``: one transaction, written in the SQL both databases accept, with ``?``
placeholders (the PostgreSQL ``Tx`` turns them into psycopg's) and the few
differences behind methods (``blob``, ``ensure_table``). Every write through a
``Tx`` is committed when the ``with`` block ends, or none of it is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from vggvox.modelcard import ModelCard
    from vggvox.storebinding import ModelId
    from vggvox.storechanges import Changes
    from vggvox.storehealth import DamagedRow
    from vggvox.storerows import NewPrints, SpeakerInfo

NOTIFY_CHANNEL = "vggvox_changes"
"""PostgreSQL's channel: every write NOTIFYs it with the new generation."""


class Rows(Protocol):
    """What a statement gives back (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction on a store's database."""

    dialect: str
    """``sqlite`` or ``postgresql``."""
    location: str
    """The store, for messages (a URL without its password)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows: ...

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None: ...

    def blob(self, column: str) -> str:
        """``column`` read as bytes whatever was stored in it (SQLite's columns have no
        fixed type: a damaged row may hold text)."""
        ...

    def ensure_table(self, name: str, sqlite_ddl: str) -> bool:
        """Whether side table ``name`` exists, creating it where the store can be
        written (SQLite: from ``sqlite_ddl``; PostgreSQL: its schema migrations made it)."""
        ...

    def lock(self, table: str) -> None:
        """Hold ``table`` against other writers until the transaction ends (what was read
        is what gets updated): SQLite's BEGIN IMMEDIATE, PostgreSQL's LOCK TABLE."""
        ...

    def bump_generation(self, names: Collection[str] | None = None) -> int:
        """Bump the store's generation counter, and log ``names`` as the speakers this
        transaction wrote (None: unknown, followers read whole; ``storechanges``).
        PostgreSQL: and NOTIFY it, at commit."""
        ...


class Store(Protocol):
    """A voiceprint store (see ``store.py`` for the rules both backends keep)."""

    @property
    def location(self) -> str:
        """The store for messages: a path, or a URL with its password hidden."""
        ...

    @property
    def read_only(self) -> str | None: ...

    damaged: list[DamagedRow]

    def model(self) -> str | None: ...

    def generation(self) -> int: ...

    def changed_since(self, since: int, upto: int) -> Changes | None:
        """What generations ``since + 1`` to ``upto`` (``upto``: a ``generation()`` read
        before) changed: the speakers written, and whether any was removed (unnamed); or
        None when the store cannot say: read it whole then (``storechanges``)."""
        ...

    def names(self) -> set[str]:
        """The speakers' names alone: what a follower compares after a removal."""
        ...

    def enroll(self, name: str, embeddings: np.ndarray, model: str | ModelId | ModelCard,
               sources: list[str], seconds: list[float], replace: bool = False,
               force: bool = False) -> SpeakerInfo: ...

    def enroll_many(self, speakers: Sequence[NewPrints], model: str | ModelId | ModelCard,
                    replace: bool = False, force: bool = False) -> None: ...

    def remove(self, name: str) -> bool: ...

    @property
    def erasure_pending(self) -> bool: ...

    def retry_erasure(self) -> bool: ...

    def checkpoint(self) -> bool: ...

    def after_erasure(self, what: str) -> None:
        """Rows naming ``what`` were deleted (and committed) through ``transaction()``:
        erase them from the database's files (SQLite: a WAL checkpoint; PostgreSQL:
        VACUUM), or mark the erasure pending."""
        ...

    def speaker(self, name: str) -> SpeakerInfo: ...

    def speakers(self) -> list[SpeakerInfo]: ...

    def voiceprints(self, model: str | ModelId | ModelCard) -> tuple[list[str], np.ndarray]: ...

    def voiceprint_of(self, name: str, model: str | ModelId | ModelCard
                      ) -> np.ndarray | None: ...

    def voiceprints_of(self, names: Sequence[str], model: str | ModelId | ModelCard
                       ) -> tuple[list[str], np.ndarray]:
        """``voiceprints`` of these speakers alone, in one transaction: those not in the
        store (or damaged, logged) are left out."""
        ...

    def transaction(self) -> AbstractContextManager[Tx]: ...

    def wait_for_change(self, timeout_s: float) -> bool:
        """Block until another writer may have changed the store (True), or ``timeout_s``
        passed (False); then compare ``generation()``."""
        ...

    def close(self) -> None: ...
