"""Which model a store's speakers belong to: the model file's sha256, not its name.

A card's name and version say which model it claims to be; only the hash of
the ONNX file says which weights made an embedding. Two files under one tag
(a re-export, an altered file with a regenerated card) give scores that must
never mix, so a speaker row records both: the tag, for people (lists, events),
and the hash, which is what binds.

Rows without a hash (schema 1 stores, or written by a caller that named the
model by its tag alone) match by tag, and the first caller that names the
model by its hash adopts them: from then on they are bound to that file.

``Binding`` works in one transaction (a ``storeapi.Tx``, either backend). Its
checks for a batch of new speakers cost one scan of the table in all
(``foreign`` is read once, then kept up to date by the batch's own deletes),
not one per new speaker: ``enroll_many`` of N into a store of M is O(M + N).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from vggvox.errors import ModelMismatchError
from vggvox.modelcard import ModelCard
from vggvox.storeapi import Tx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelId:
    tag: str
    """name@version, as people see it."""
    sha256: str | None = None
    """The ONNX file's sha256 (None: known by its tag alone, a weaker check)."""
    dim: int | None = field(default=None, compare=False)
    """The model's embedding size, when known: a stored vector of another is damaged."""

    @classmethod
    def of(cls, card: ModelCard) -> ModelId:
        # The card's sha256 is the file's: loading a card checks it (modelcard.verify_file).
        return cls(card.tag, card.sha256, card.embedding_size)

    @classmethod
    def coerce(cls, model: str | ModelId | ModelCard) -> ModelId:
        if isinstance(model, ModelId):
            return model
        if isinstance(model, ModelCard):
            return cls.of(model)
        return cls(model)

    def __str__(self) -> str:
        return self.tag if self.sha256 is None else f"{self.tag} (file sha256 {self.sha256[:12]})"


class Binding:
    """One transaction's view of which rows belong to ``model``."""

    def __init__(self, where: object, db: Tx, model: str | ModelId | ModelCard) -> None:
        self.path = where
        """The store, for messages (its path or URL)."""
        self.db = db
        self.model = ModelId.coerce(model)
        self._foreign: dict[str, ModelId] | None = None
        self._new_sha: tuple[str | None] | None = None

    def _condition(self) -> tuple[str, tuple[str, ...]]:
        """SQL condition (and parameters) for speaker rows of another model."""
        if self.model.sha256 is None:
            return "model != ?", (self.model.tag,)
        return ("((model_sha256 IS NOT NULL AND model_sha256 != ?) "
                "OR (model_sha256 IS NULL AND model != ?))", (self.model.sha256, self.model.tag))

    def foreign(self) -> dict[str, ModelId]:
        """Speakers of another model, read once per transaction: two at most, which is
        enough to refuse anything but the replacement of that one speaker."""
        if self._foreign is None:
            cond, params = self._condition()
            rows = self.db.execute(f"SELECT name, model, model_sha256 FROM speakers WHERE "
                                   f"{cond} LIMIT 2", params).fetchall()
            self._foreign = {r[0]: ModelId(r[1], r[2]) for r in rows}
        return self._foreign

    def deleted(self, name: str) -> None:
        """This transaction deleted ``name``'s rows (a replacement): no longer foreign."""
        if self._foreign is not None and self._foreign.pop(name, None) is not None \
                and len(self._foreign) == 1:
            self._foreign = None  # there may have been more than the two read: read again

    def refuse_others(self, reason: str, besides: str | None = None) -> None:
        """ModelMismatchError if any speaker (but ``besides``) is another model's."""
        others = [m for n, m in self.foreign().items() if n != besides]
        if others:
            raise ModelMismatchError(f"{self.path} holds voiceprints of model "
                                     f"{others[0]}; {reason}")

    def refuse_speaker(self, name: str) -> None:
        """ModelMismatchError if ``name`` was enrolled with another model."""
        cond, params = self._condition()
        row = self.db.execute(f"SELECT model, model_sha256 FROM speakers WHERE {cond} "
                              "AND name = ?", (*params, name)).fetchone()
        if row:
            raise ModelMismatchError(f"{name!r} was enrolled with model {ModelId(*row)}, "
                                     f"not {self.model}; use --replace")

    def adopt(self) -> None:
        """Bind the rows known only by this model's tag to its file's hash."""
        if self.model.sha256 is None:
            return
        n = self.db.execute("UPDATE speakers SET model_sha256 = ? "
                            "WHERE model_sha256 IS NULL AND model = ?",
                            (self.model.sha256, self.model.tag)).rowcount
        if n:
            log.info("%s: %d speaker(s) enrolled with %s bound to its model file, sha256 %s",
                     self.path, n, self.model.tag, self.model.sha256)

    def sha256_for_new_rows(self) -> str | None:
        """The hash a new speaker row records: the model's, or (named by tag alone) that
        of the rows already bound under the same tag (read once per transaction)."""
        if self.model.sha256 is not None:
            return self.model.sha256
        if self._new_sha is None:
            row = self.db.execute("SELECT model_sha256 FROM speakers WHERE model = ? AND "
                                  "model_sha256 IS NOT NULL LIMIT 1",
                                  (self.model.tag,)).fetchone()
            self._new_sha = (row[0] if row else None,)
        return self._new_sha[0]
