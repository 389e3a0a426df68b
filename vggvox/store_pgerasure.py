"""Erasure in the PostgreSQL store: removed rows deleted, then vacuumed, and said so.

A DELETE in PostgreSQL only marks a row dead; its bytes stay in the table's pages
until VACUUM frees them, and VACUUM can free only the rows that no running
transaction's snapshot can still see. So a removal (a speaker, a provisional
voice) is complete when a VACUUM has run after it, with no other session holding
a snapshot older than the deleting transaction (``pg_stat_activity.backend_xmin``).
Until then ``pending`` is True (the daemon's reply says ``pending``), and ``retry``
VACUUMs again, at most once per ``erasure.RETRY_S``: after a long reader ends, or after
the server comes back from an outage that fell between the DELETE and the VACUUM.

The VACUUM covers every table a removed speaker's name or voice can be in: their
rows, the provisional voices, and the change log (whose rows of a removed name lose it
in the removing transaction: ``storechanges.forget``). It ANALYZEs them too: column
statistics (``pg_statistic``, which ANALYZE and autovacuum fill) sample the values of
every column, names and vectors alike, and keep them until the next ANALYZE; then
``pg_statistic`` is vacuumed for their old versions (allowed to the database's owner;
another role gets a warning, and autovacuum frees them later).

What VACUUM does not reach: the freed space in the data files (VACUUM marks it free
for new rows, it does not overwrite it), the write-ahead log (recycled at
checkpoints), and base backups or replicas of the database, which are the operator's
to manage (docs/postgresql.md). Seeing other roles' snapshots needs the ``pg_read_all_stats``
role (or the owner's); without it they are not seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vggvox.erasure import PendingErasure
from vggvox.errors import StoreError
from vggvox.storeapi import Tx

log = logging.getLogger(__name__)

VACUUM_SQL = (
    "VACUUM (ANALYZE) speakers, embeddings, provisional, changes",
    "VACUUM pg_statistic",
)
"""An erasure's commands, in order (see above)."""


class PgErasure(PendingErasure):
    HELD_UP = ("the rows are deleted, but VACUUM could not free them yet (an older "
               "snapshot, or the server is away); retrying")

    def __init__(self, where: str, vacuum: Callable[[], bool]) -> None:
        super().__init__(where)
        self._vacuum = vacuum
        self._xid: int | None = None
        """The last deleting transaction's id (32-bit, as ``backend_xmin``)."""

    def deleted_by(self, tx: Tx) -> None:
        """Note the transaction that deletes (called inside it)."""
        self._xid = int(tx.execute("SELECT txid_current() % 4294967296").fetchone()[0])

    def no_older_snapshot(self, conn: Any) -> bool:
        """Whether no other session holds a snapshot from before the last deletion."""
        if self._xid is None:
            return True
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_xmin "
            "IS NOT NULL AND age(backend_xmin) >= age(%s::text::xid) LIMIT 1",
            (str(self._xid),)).fetchone()
        return row is None

    def vacuum_now(self) -> bool:
        """VACUUM; True when it ran and nothing older can still see the removed rows."""
        try:
            return self._vacuum()
        except StoreError as e:
            log.error("%s: vacuum failed: %s", self.where, e)
            return False

    def _finish(self) -> bool:
        return self.vacuum_now()
