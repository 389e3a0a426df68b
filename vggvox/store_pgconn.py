"""Connections to the PostgreSQL store: opened with short timeouts, their failures said
in one line, a ``storeapi.Tx`` over one transaction, and the LISTEN connection.

A server that cannot be reached (down, refused, timed out, or gone in the middle
of a transaction) is ``StoreUnavailable``: ``store URL unreachable: <reason>``. The
transaction it interrupted was never committed, so nothing of it remains. Every
connection is in autocommit mode and each operation opens its own transaction
(``conn.transaction()``), which leaves VACUUM (never inside one) possible on the
same connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import psycopg

from vggvox import storechanges
from vggvox.errors import StoreError, StoreUnavailable
from vggvox.storeapi import NOTIFY_CHANNEL, Rows

log = logging.getLogger("vggvox.store")

CONNECT_TIMEOUT_S = 3
"""How long a connection attempt waits for the server: a daemon's request must not hang."""
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 2, "tcp_user_timeout": 10_000}
"""A server that vanishes without closing the connection (a cut network) is noticed in
about 10 s, not after the system's two hours."""


def connect(url: str, where: str) -> psycopg.Connection[Any]:
    """An autocommit connection; StoreUnavailable if the server cannot be reached."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="vggvox", **_KEEPALIVE)
    except psycopg.Error as e:
        raise unavailable(where, e) from None


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())


def unavailable(where: str, error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"store {where} unreachable: {first_line(error)}")


def failure(where: str, conn: psycopg.Connection[Any] | None, error: psycopg.Error
            ) -> StoreError:
    """The one-line error for a failed statement: StoreUnavailable when the connection
    broke (the server went away), StoreError otherwise."""
    if conn is None or conn.broken or conn.closed:
        return unavailable(where, error)
    return StoreError(f"{where}: {first_line(error)}")


class PgTx:
    """A ``storeapi.Tx`` in an open psycopg transaction; ``?`` placeholders as SQLite's."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], location: str) -> None:
        self.conn = conn
        self.location = location

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[object] = ()) -> Rows:
        return self.conn.execute(self._sql(sql), tuple(params))  # type: ignore[arg-type]

    def executemany(self, sql: str, params: Iterable[Sequence[object]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self._sql(sql), [tuple(p) for p in params])  # type: ignore[arg-type]

    def blob(self, column: str) -> str:
        return column  # bytea: bytes already

    def ensure_table(self, name: str, sqlite_ddl: str) -> bool:
        return True  # made by the schema's migrations (store_pgschema.py)

    def lock(self, table: str) -> None:
        # Another writer of this table waits until we commit; readers do not.
        self.conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    def bump_generation(self, names: Collection[str] | None = None) -> int:
        """The new generation, with the speakers it wrote in the change log
        (``storechanges``); every LISTENer hears it when the transaction commits."""
        row = self.conn.execute("UPDATE meta SET value = (value::bigint + 1)::text "
                                "WHERE key = 'generation' RETURNING value").fetchone()
        assert row is not None
        storechanges.record(self, int(row[0]), names)
        self.conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, row[0]))
        return int(row[0])


class Listener:
    """LISTEN on a connection of its own, reconnecting after the server comes back."""

    def __init__(self, url: str, where: str) -> None:
        self.url = url
        self.where = where
        self.conn: psycopg.Connection[Any] | None = None
        self._lost = False

    def _open(self) -> None:
        self.conn = connect(self.url, self.where)
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout_s: float) -> bool:
        """True when a change was announced, or the connection came back (changes may
        have been missed while it was gone); False after ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        if self.conn is None:
            try:
                self._open()
            except StoreUnavailable as e:
                if not self._lost:
                    log.warning("%s; following changes again when it is back", e)
                self._lost = True
                time.sleep(max(0.0, deadline - time.monotonic()))
                return False
            if self._lost:
                self._lost = False
                log.info("store %s reachable again: following its changes", self.where)
                return True
        assert self.conn is not None
        try:
            for _ in self.conn.notifies(timeout=max(0.0, deadline - time.monotonic()),
                                        stop_after=1):
                return True
        except psycopg.Error as e:
            log.warning("%s", unavailable(self.where, e))
            self.close()
            self._lost = True
            time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
