"""An on-disk embedding cache keyed by file content and model.

Batch runs over thousands of files recompute nothing on a rerun. Entries are
.npy files named by the sha256 of the audio bytes, under a folder per model
file hash, written atomically so that parallel workers never read half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from vggvox.modelcard import sha256_of


def content_key(path: Path) -> str:
    """The cache key of an audio file: the sha256 of its bytes."""
    return sha256_of(path)


class EmbeddingCache:
    def __init__(self, root: str | Path, model_sha256: str, tag: str = "") -> None:
        # The tag separates settings that change an embedding (e.g. --max-sec-enroll).
        self.dir = Path(root) / (model_sha256[:16] + (f"-{tag}" if tag else ""))

    def _file(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        f = self._file(key)
        try:
            return np.load(f, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, key: str, embedding: np.ndarray) -> None:
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=f.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            np.save(out, np.asarray(embedding, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, f)
