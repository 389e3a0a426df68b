"""The voiceprint store in PostgreSQL, shared by several daemons (``postgresql://`` URLs).

It keeps every rule of the SQLite store (``store.py``), through the same row
functions (``storerows.py``): model binding by the model file's sha256, the
same-voice and confusable-name checks, ``enroll_many`` in one transaction (all or
none), provisional voices and room calibrations (``Store.transaction()``).

What differs:

- **Followers.** Every write to the voiceprints bumps ``meta.generation`` and
  NOTIFYs channel ``vggvox_changes`` with it, in the same transaction (so the
  notice goes out only if the write commits). ``wait_for_change`` LISTENs on a
  connection of its own; a notice missed while a daemon was away is caught by
  comparing ``generation()``.
- **Outages.** Connections open with a 3 s timeout; any call while the server
  cannot be reached raises ``StoreUnavailable`` in one line, and the transaction
  it was in was never committed. The next call connects again.
- **Erasure** (``store_pgerasure.py``): a removal deletes the rows, then VACUUMs
  the tables, and ``erasure_pending`` is True until a VACUUM has run with no
  older snapshot left that could still see them; ``retry_erasure`` finishes it.
- **Schema** (``store_pgschema.py``): versioned, migrated on open under an
  advisory lock.
- Never read-only: ``read_only`` is None (a server refusing writes is an error
  per write).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from vggvox import storechanges
from vggvox.errors import StoreError
from vggvox.store_pgconn import Listener, PgTx, connect, failure
from vggvox.store_pgerasure import VACUUM_SQL, PgErasure
from vggvox.store_pgschema import migrate
from vggvox.storeapi import Tx
from vggvox.storehealth import DamagedRow
from vggvox.storeopen import hidden
from vggvox.storerows import HeldNames
from vggvox.storewrites import StoreWrites

log = logging.getLogger("vggvox.store")


IDLE_CHECK_S = 1.0
"""A connection idle this long is tried before use (``_connection``)."""


class PgStore(StoreWrites):
    """Voiceprints in a PostgreSQL database. Safe to use from several threads (one
    connection, one operation at a time) and from several processes and machines."""

    erasure: PgErasure

    def __init__(self, url: str) -> None:
        self.url = url
        self._where = hidden(url)
        self.damaged: list[DamagedRow] = []
        self._held = HeldNames()
        """The names and their look-alike skeletons, kept between enrollments."""
        self._lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._used = 0.0
        self._listener = Listener(url, self._where)
        self.erasure = PgErasure(self._where, self._vacuum)
        with self._lock:
            try:
                migrate(self._connection(), self._where)
            except psycopg.Error as e:
                raise self._failed(e) from None

    @property
    def location(self) -> str:
        return self._where

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection, opened again if it broke. One idle for a while is tried
        first: a server restarted meanwhile closed it, and the first call after an
        outage should not fail for that."""
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken) and \
                time.monotonic() - self._used > IDLE_CHECK_S:
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
        if conn is None or conn.closed or conn.broken:
            conn = self._conn = connect(self.url, self._where)
        self._used = time.monotonic()
        return conn

    def _failed(self, error: psycopg.Error) -> StoreError:
        """The error to raise; a broken connection is dropped (the next call reconnects)."""
        out = failure(self._where, self._conn, error)
        if self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn.close()
            self._conn = None
        return out

    @contextmanager
    def transaction(self) -> Iterator[PgTx]:
        """One transaction (``storeapi.Tx``): committed when the block ends, rolled back
        if it raises; StoreUnavailable if the server cannot be reached."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    yield PgTx(conn, self._where)
            except psycopg.Error as e:
                raise self._failed(e) from None

    def changed_since(self, since: int, upto: int) -> storechanges.Changes | None:
        """What changed since generation ``since`` (``storechanges``)."""
        with self.transaction() as tx:
            return storechanges.changed_since(tx, since, upto)

    def _deleted(self, tx: Tx) -> None:
        self.erasure.deleted_by(tx)

    def after_erasure(self, what: str) -> None:
        with self.transaction() as tx:
            self.erasure.deleted_by(tx)
        self.erasure.after_removal(what)

    def checkpoint(self) -> bool:
        """VACUUM now; False when it could not run or an older snapshot holds rows."""
        return self.erasure.vacuum_now()

    def _vacuum(self) -> bool:
        """VACUUM the tables a removal deletes from; False while another session's
        snapshot is older than the last deleting transaction (it may still see them)."""
        with self._lock:
            try:
                conn = self._connection()
                for sql in VACUUM_SQL:
                    conn.execute(sql)
                return self.erasure.no_older_snapshot(conn)
            except psycopg.Error as e:
                raise self._failed(e) from None

    def wait_for_change(self, timeout_s: float) -> bool:
        """LISTEN for another writer's NOTIFY (True), or ``timeout_s`` (False)."""
        return self._listener.wait(timeout_s)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
