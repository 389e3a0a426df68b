"""The recent end of an append-only sequence (samples, fbank frames), kept in one array.

The segmenter keeps the last few seconds of its stream's samples and frames.
Concatenating each new block onto what is kept copied all of it on every
block: ~100 KB per 20 ms block per stream, which with twenty streams was the
biggest cost of the streams' threads (bench/bench_capacity.py, py-spy). Here
an append copies only the new rows; the live rows move to the front of the
array only when it is full, once per array's worth of appends.

Rows are addressed by their absolute index in the sequence. Not thread-safe.
"""

from __future__ import annotations

import numpy as np


class Tail:
    def __init__(self, capacity: int, row_shape: tuple[int, ...] = (),
                 dtype: type | np.dtype = np.int16) -> None:
        self._buf = np.zeros((max(capacity, 1), *row_shape), dtype=dtype)
        self._lo = 0
        """Position in ``_buf`` of the first live row."""
        self._hi = 0
        """Position in ``_buf`` one past the last row."""
        self.start = 0
        """Absolute index of the first live row."""

    def reset(self, start: int) -> None:
        """Forget every row; the next appended row is number ``start``."""
        self._lo = self._hi = 0
        self.start = start

    @property
    def end(self) -> int:
        """Absolute index one past the last row."""
        return self.start + self._hi - self._lo

    def __len__(self) -> int:
        return self._hi - self._lo

    def append(self, rows: np.ndarray) -> None:
        n = len(rows)
        if self._hi + n > len(self._buf):
            live = self._hi - self._lo
            if live + n > len(self._buf):  # grow: never reached at a steady state
                bigger = np.zeros((2 * (live + n), *self._buf.shape[1:]), self._buf.dtype)
                bigger[:live] = self._buf[self._lo:self._hi]
                self._buf = bigger
            else:
                self._buf[:live] = self._buf[self._lo:self._hi]
            self._lo, self._hi = 0, live
        self._buf[self._hi:self._hi + n] = rows
        self._hi += n

    def drop_before(self, index: int) -> None:
        """Forget the rows before absolute ``index``."""
        drop = min(index - self.start, len(self))
        if drop > 0:
            self._lo += drop
            self.start += drop

    def get(self, lo: int, hi: int) -> np.ndarray | None:
        """A copy of rows [lo, hi), or None unless all of them are kept."""
        if lo < self.start or hi > self.end or hi < lo:
            return None
        a = self._lo + lo - self.start
        return self._buf[a:a + hi - lo].copy()
