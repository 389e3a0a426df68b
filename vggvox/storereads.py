"""The voiceprint store's reads, the same for every backend (``store.py``, ``store_pg.py``).

A backend gives ``transaction()`` (``storeapi.Tx``) and ``read_only``; the rows are
read by ``storerows`` in both, so what a read answers, refuses and logs is said once here.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from contextlib import AbstractContextManager

import numpy as np

from vggvox.errors import StoreError
from vggvox.modelcard import ModelCard
from vggvox.storeapi import Tx
from vggvox.storebinding import ModelId
from vggvox.storehealth import DamagedRow
from vggvox.storerows import SpeakerInfo, infos, read_prints

log = logging.getLogger("vggvox.store")


class StoreReads:
    """Speakers and voiceprints read through the backend's ``transaction()``."""

    damaged: list[DamagedRow]
    """The damaged speakers the last read of the voiceprints left out (storehealth.py)."""

    def transaction(self) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    @property
    def read_only(self) -> str | None:
        """Why this store cannot be written (then it is only read), or None."""
        return None

    def model(self) -> str | None:
        """The tag of the model this store is bound to, or None while it is empty."""
        with self.transaction() as tx:
            row = tx.execute("SELECT model FROM speakers LIMIT 1").fetchone()
        return row[0] if row else None

    def generation(self) -> int:
        with self.transaction() as tx:
            row = tx.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0])

    def names(self) -> set[str]:
        """The speakers' names alone (a follower's check for removals)."""
        with self.transaction() as tx:
            return {r[0] for r in tx.execute("SELECT name FROM speakers").fetchall()}

    def speaker(self, name: str) -> SpeakerInfo:
        name = unicodedata.normalize("NFC", name)
        with self.transaction() as tx:
            found = infos(tx, name)
        if not found:
            raise StoreError(f"no speaker named {name!r}")
        return found[0]

    def speakers(self) -> list[SpeakerInfo]:
        with self.transaction() as tx:
            return infos(tx)

    def voiceprints(self, model: str | ModelId | ModelCard) -> tuple[list[str], np.ndarray]:
        """Names and voiceprint matrix (speakers, dim), refusing another model's prints."""
        names, prints, damaged = self._read(model, None)
        before = set(self.damaged)
        for d in damaged:
            if d not in before:
                log.error("%s", d)  # once each: a daemon reads again after every change
        self.damaged = damaged
        return names, prints

    def voiceprint_of(self, name: str, model: str | ModelId | ModelCard) -> np.ndarray | None:
        """One speaker's voiceprint (None: no such speaker), refusing another model's."""
        names, prints, damaged = self._read(model, [unicodedata.normalize("NFC", name)])
        if damaged:
            raise StoreError(str(damaged[0]))
        return prints[0] if names else None

    def voiceprints_of(self, names: Sequence[str], model: str | ModelId | ModelCard
                       ) -> tuple[list[str], np.ndarray]:
        """These speakers' voiceprints (``storeapi.Store.voiceprints_of``)."""
        found, prints, damaged = self._read(model, [unicodedata.normalize("NFC", n)
                                                    for n in names])
        for d in damaged:
            log.error("%s", d)
        return found, prints

    def _read(self, model: str | ModelId | ModelCard, only: Sequence[str] | None
              ) -> tuple[list[str], np.ndarray, list[DamagedRow]]:
        # A read-only store reads a schema-1 speaker without binding it to the model.
        with self.transaction() as tx:
            return read_prints(tx, model, only, adopt=self.read_only is None)
