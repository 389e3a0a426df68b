"""The ring buffer between a capture callback and the thread that reads it.

Fixed capacity, indexed by absolute sample number (samples since the source
started), so that every stage speaks the stream's own clock. When the reader
falls behind, the oldest unread audio is overwritten and counted: memory stays
bounded and the writer (the capture callback) never waits on the reader. A
finite source that must lose nothing writes with ``wait=True`` instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.int16)
        self._end = 0  # absolute index one past the newest sample
        self._read = 0  # absolute index of the oldest unread sample
        self.dropped = 0  # unread samples overwritten because the reader fell behind
        self._cond = threading.Condition()
        # (end index, wall time) of recent writes: when did a sample arrive?
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)

    @property
    def end(self) -> int:
        return self._end

    @property
    def start(self) -> int:
        """Oldest sample still held."""
        return max(0, self._end - self.capacity)

    @property
    def unread(self) -> int:
        return self._end - self._read

    def write(self, samples: np.ndarray, wait: bool = False,
              stop: threading.Event | None = None) -> None:
        """Append samples; only copies, and holds the lock for that copy alone.

        With ``wait``, first wait until the reader has made room (or ``stop`` is
        set): nothing unread is overwritten.
        """
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            if wait:
                for i in range(0, n, self.capacity):
                    self.write(samples[i : i + self.capacity], wait, stop)
                return
            samples = samples[-self.capacity :]
        with self._cond:
            while wait and self.capacity - self.unread < n and not (stop and stop.is_set()):
                self._cond.wait(0.1)
            end = self._end + n
            m = len(samples)
            pos = (end - m) % self.capacity
            first = min(m, self.capacity - pos)
            self._buf[pos : pos + first] = samples[:first]
            self._buf[: m - first] = samples[first:]
            self._end = end
            self._arrivals.append((end, time.time()))
            oldest = end - self.capacity
            if self._read < oldest:
                self.dropped += oldest - self._read
                self._read = oldest
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> tuple[int, np.ndarray]:
        """Everything unread, as (absolute index of its first sample, samples)."""
        with self._cond:
            if self._read == self._end and timeout:
                self._cond.wait(timeout)
            start = self._read
            out = self._copy(start, self._end)
            self._read = self._end
            self._cond.notify_all()  # a waiting writer has room now
            return start, out

    def get(self, start: int, end: int) -> np.ndarray | None:
        """Samples [start, end) if still held, else None."""
        with self._cond:
            if start < self.start or end > self._end or start > end:
                return None
            return self._copy(start, end)

    def arrival(self, index: int) -> float:
        """Wall time at which sample ``index`` was written (now, if unknown)."""
        with self._cond:
            found = None
            for end, wall in reversed(self._arrivals):
                if end <= index:
                    break
                found = wall
            return found if found is not None else time.time()

    def space(self) -> int:
        """Samples that can be written without overwriting unread audio."""
        return self.capacity - self.unread

    def _copy(self, start: int, end: int) -> np.ndarray:
        pos, n = start % self.capacity, end - start
        first = min(n, self.capacity - pos)
        return np.concatenate([self._buf[pos : pos + first], self._buf[: n - first]])
