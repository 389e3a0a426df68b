"""The voiceprint store's writes, the same for every backend (``store.py``, ``store_pg.py``).

Both backends enroll through ``storerows.enroll_all`` and log each change
(``storechanges``) in the same transaction, and both erase a removed speaker through a
``PendingErasure``; what differs is the backend's ``transaction()`` and what a deleting
transaction must note for its erasure (``_deleted``: PostgreSQL remembers it, so that a
VACUUM waits for older snapshots).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence

import numpy as np

from vggvox import storechanges
from vggvox.erasure import PendingErasure
from vggvox.modelcard import ModelCard
from vggvox.storeapi import Tx
from vggvox.storebinding import ModelId
from vggvox.storereads import StoreReads
from vggvox.storerows import HeldNames, NewPrints, SpeakerInfo, enroll_all


class StoreWrites(StoreReads):
    """Enrollments and removals through the backend's ``transaction()``."""

    erasure: PendingErasure
    _held: HeldNames
    """The stored names' look-alike index, kept between transactions (``storerows``)."""

    def _deleted(self, tx: Tx) -> None:
        """Rows were deleted in ``tx``: what the backend's erasure must know of it."""

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
        took 1.1 s one at a time. Its checks cost O(stored + new) (``storerows``)."""
        checked = [s.checked() for s in speakers]
        with self.transaction() as tx:
            enroll_all(tx, checked, model, time.time(), replace, force, self._held)
            tx.bump_generation([s.name for s in checked])

    def remove(self, name: str) -> bool:
        """Remove a speaker and erase their vectors from the store's files (see
        ``erasure_pending`` for whether that could finish yet)."""
        name = unicodedata.normalize("NFC", name)
        with self.transaction() as tx:
            gone = tx.execute("DELETE FROM speakers WHERE name = ?", (name,)).rowcount > 0
            if gone:
                storechanges.removed(tx, name)  # the log keeps no name (storechanges)
                self._deleted(tx)
        if gone:
            self.erasure.after_removal(name)
        return gone

    @property
    def erasure_pending(self) -> bool:
        """A removed speaker's vectors may still be in the store's files."""
        return self.erasure.pending

    def retry_erasure(self) -> bool:
        """Finish a pending erasure if what held it up is gone (at most once a second);
        True when none is pending. No I/O when none is: call it from any loop."""
        return self.erasure.retry()
