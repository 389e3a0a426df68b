"""Audio on the wire: 16-bit little-endian mono PCM at 16 kHz, as bytes (the ``audio``
fields of ``enroll`` and ``replay``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from vggvox.audio import SAMPLE_RATE, to_int16
from vggvox.protocol.errors import RequestError

__all__ = ["SAMPLE_RATE", "check_pcm", "from_pcm", "to_pcm"]


def to_pcm(x: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as the wire's bytes (clipped)."""
    return to_int16(x).tobytes()


def check_pcm(blob: Any, what: str) -> bytes:
    """``blob``, when it is bytes of 16-bit PCM; else a RequestError naming the field
    ``what``. Nothing is decoded: a request is checked before its handler decodes it."""
    if not isinstance(blob, bytes):
        raise RequestError(f"{what} must be bytes of 16-bit PCM, got {type(blob).__name__}")
    if len(blob) % 2:
        raise RequestError(f"{what} has an odd number of bytes: not 16-bit PCM")
    return blob


def from_pcm(blob: Any, what: str) -> np.ndarray:
    """The int16 samples of request bytes (``check_pcm`` first)."""
    return np.frombuffer(check_pcm(blob, what), dtype="<i2").astype(np.int16)
