"""Which model a store's speakers belong to: the model file's sha256, not its name.

A card's name and version say which model it claims to be; only the hash of
the ONNX file says which weights made an embedding. Two files under one tag
(a re-export, an altered file with a regenerated card) give scores that must
never mix, so a speaker row records both: the tag, for people (lists, events),
and the hash, which is what binds.

Rows without a hash (schema 1 stores, or written by a caller that named the
model by its tag alone) match by tag, and the first caller that names the
model by its hash adopts them: from then on they are bound to that file.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from vggvox.errors import ModelMismatchError
from vggvox.modelcard import ModelCard

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

    def __init__(self, path: Path, db: sqlite3.Connection,
                 model: str | ModelId | ModelCard) -> None:
        self.path = path
        self.db = db
        self.model = ModelId.coerce(model)

    def _foreign(self) -> tuple[str, tuple[str, ...]]:
        """SQL condition (and parameters) for speaker rows of another model."""
        if self.model.sha256 is None:
            return "model != ?", (self.model.tag,)
        return ("((model_sha256 IS NOT NULL AND model_sha256 != ?) "
                "OR (model_sha256 IS NULL AND model != ?))", (self.model.sha256, self.model.tag))

    def refuse_others(self, reason: str, besides: str | None = None) -> None:
        """ModelMismatchError if any speaker (but ``besides``) is another model's."""
        cond, params = self._foreign()
        row = self.db.execute(f"SELECT model, model_sha256 FROM speakers WHERE {cond} "
                              "AND name != ? LIMIT 1", (*params, besides or "")).fetchone()
        if row:
            raise ModelMismatchError(f"{self.path} holds voiceprints of model "
                                     f"{ModelId(*row)}; {reason}")

    def refuse_speaker(self, name: str) -> None:
        """ModelMismatchError if ``name`` was enrolled with another model."""
        cond, params = self._foreign()
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
        of the rows already bound under the same tag."""
        if self.model.sha256 is not None:
            return self.model.sha256
        row = self.db.execute("SELECT model_sha256 FROM speakers WHERE model = ? AND "
                              "model_sha256 IS NOT NULL LIMIT 1", (self.model.tag,)).fetchone()
        return row[0] if row else None
