"""Erasure of removed voiceprints from the store's files, and finishing it when held up.

``secure_delete`` overwrites a removed row's bytes in the new version of its
page, and a WAL checkpoint (TRUNCATE) copies that version over the old one in
the store file and empties the log. While another connection (any process)
holds a read transaction, SQLite keeps the old pages that reader may still
need, so the checkpoint cannot finish and the removed vectors stay in the
store file or its ``-wal`` until that reader ends. This says so (``pending``)
and finishes the job on a later ``retry``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from vggvox.errors import StoreError

CHECKPOINT_WAIT_S = 0.1
"""Longest a checkpoint waits for readers: it runs in the daemon's control and main
threads, which must stay responsive; an unfinished one is retried."""
RETRY_S = 1.0
"""Least time between two retries of a pending erasure."""


class PendingErasure:
    """An erasure that may be held up: which one is pending, and its retries at most
    once per ``RETRY_S`` (both backends; ``store_pgerasure.PgErasure`` is the other).
    A backend gives ``_finish`` (True: the removed rows are in no file any more) and
    ``HELD_UP``, what the warning says holds a pending one up."""

    HELD_UP = ""

    def __init__(self, where: str | Path) -> None:
        self.where = where
        self._lock = threading.Lock()  # one attempt at a time, and the state with it
        self._pending: str | None = None
        """Whose erasure is unfinished (None: nothing pending)."""
        self._next_retry = 0.0
        self._log = logging.getLogger(type(self).__module__)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def _finish(self) -> bool:
        raise NotImplementedError

    def after_removal(self, what: str) -> None:
        """Finish the erasure after ``what``'s rows were deleted (and committed);
        remember it if held up."""
        with self._lock:
            if self._finish():
                self._pending = None
                return
            self._pending = what
            self._next_retry = time.monotonic() + RETRY_S
        self._log.warning("%s: erasure of %r pending: %s", self.where, what, self.HELD_UP)

    def retry(self) -> bool:
        """Retry a pending erasure, at most once per ``RETRY_S``; True when none is
        pending. No I/O when nothing is pending: cheap to call from any loop."""
        if self._pending is None:
            return True
        with self._lock:
            now = time.monotonic()
            if self._pending is None or now < self._next_retry:
                return self._pending is None
            self._next_retry = now + RETRY_S
            try:
                done = self._finish()
            except StoreError as e:
                self._log.error("%s: erasure retry failed: %s", self.where, e)
                return False
            if done:
                self._log.info("%s: pending erasure of %r complete", self.where, self._pending)
                self._pending = None
            return done


class Erasure(PendingErasure):
    HELD_UP = "another connection holds a read transaction; retrying until it ends"

    def __init__(self, path: Path,
                 connect: Callable[[], AbstractContextManager[sqlite3.Connection]]) -> None:
        super().__init__(path)
        self.path = path
        self._connect = connect

    def checkpoint(self) -> bool:
        """Copy the WAL into the store and truncate it. False when it could not finish:
        a reader still holds an old snapshot (waited for ``CHECKPOINT_WAIT_S`` at most)."""
        with self._connect() as db:  # a PRAGMA opens no transaction
            db.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_S * 1000)}")
            busy, frames, copied = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0 and frames == copied

    def _finish(self) -> bool:
        return self.checkpoint()
