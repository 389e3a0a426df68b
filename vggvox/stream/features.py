"""Filterbank frames of a stream, computed once as its audio arrives.

Windows overlap (2 s long, one every 0.5 s), so computing each window's fbank
from its samples computes every frame four times. A ``FeatureTrack`` computes
each frame of the stream once instead (``frontend.Fbank``, as a window's own
features are) and hands each window the frames it covers. That is exact, not an
approximation:

- a Kaldi frame depends only on its own 400 samples (pre-emphasis, DC removal
  and the window are all within the frame; dither is 0), so a frame of the
  stream is bit for bit the frame of a window that starts where it starts
  (``Fbank`` computes each frame alike however many it computes at once);
- with ``snip_edges`` a window starting at sample ``s`` has the frames starting
  at ``s``, ``s + shift``, ... that end within it: the stream's frames from
  ``s / shift`` on, provided ``s`` is on the stream's frame grid;
- the per-window mean normalisation is done later, on the window's frames
  (``frontend.mean_normalize``), exactly as on a whole window.

A window off the grid (a hop that is not a multiple of 10 ms, or a stream that
jumped to an odd sample) gets ``None`` and is computed from its samples as
before. ``tests/test_features.py`` checks the equality on real speech.

Only models fed fbank features with no level normalisation can use it
(``FeatureTrack.for_card``); GE2E, fed samples, computes its own partials.
Not thread-safe: it belongs to the segmenter's owner.
"""

from __future__ import annotations

import numpy as np

from vggvox.audio import to_float
from vggvox.frontend import fbank_for
from vggvox.frontend_kinds import FrontEnd
from vggvox.modelcard import ModelCard
from vggvox.stream.tail import Tail

COMPUTE_EVERY = 8000
"""Pending samples (0.5 s) that make ``push`` compute their frames. Frames are
computed a block at a time, when a window asks for them or this many samples
wait: one numpy pass per 20 ms capture block cost twice kaldi-native-fbank's
frame-at-a-time loop, one per 0.5 s costs a third of it."""


class FeatureTrack:
    """Raw (not mean-normalised) fbank frames of one stream, on its absolute sample clock."""

    def __init__(self, fe: FrontEnd) -> None:
        self.fe = fe
        self.fbank = fbank_for(fe)
        self.shift = self.fbank.shift
        self.length = self.fbank.length
        # Frames by index since the origin; 1000 (10 s) to start with, it grows if kept longer.
        self._frames = Tail(1000, (fe.num_mel_bins,), np.float32)
        self.reset(0)

    @classmethod
    def for_card(cls, card: ModelCard) -> FeatureTrack | None:
        """A track for the card's front-end, or None where frames cannot be shared."""
        if not isinstance(card.frontend, FrontEnd) or card.volume_norm_dbfs is not None:
            return None
        if card.frontend.dither != 0:
            return None  # random dither: no two computations of a frame agree
        return cls(card.frontend)

    def reset(self, origin: int) -> None:
        """Start again: the next sample pushed is number ``origin`` of the stream."""
        self.origin = origin
        self._pending: list[np.ndarray] = []
        """Samples from the start of the next frame on, not yet made into frames."""
        self._pending_n = 0
        self._frames.reset(0)

    def push(self, pcm: np.ndarray) -> None:
        """Feed the stream's next int16 samples."""
        self._pending.append(to_float(pcm))
        self._pending_n += len(pcm)
        if self._pending_n >= COMPUTE_EVERY:
            self._compute()

    def _compute(self) -> None:
        """Make the pending samples into every frame they complete."""
        if self._pending_n < self.length:
            return
        x = np.concatenate(self._pending)
        frames = self.fbank.frames(x)
        self._frames.append(frames)
        rest = x[len(frames) * self.shift:]
        self._pending, self._pending_n = [rest], len(rest)

    def frames(self, start: int, end: int) -> np.ndarray | None:
        """The frames of window [start, end), or None if it is off the grid or not kept."""
        offset = start - self.origin
        if offset < 0 or offset % self.shift or end - start < self.length:
            return None
        first = offset // self.shift
        count = (end - start - self.length) // self.shift + 1
        self._compute()
        return self._frames.get(first, first + count)

    def trim(self, keep_from: int) -> None:
        """Forget frames that start before sample ``keep_from`` (no window needs them).
        Pending samples are newer than any window's start, so they stay."""
        self._frames.drop_before((keep_from - self.origin) // self.shift)
