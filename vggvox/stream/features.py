"""Filterbank frames of a stream, computed once as its audio arrives.

Windows overlap (2 s long, one every 0.5 s), so computing each window's fbank
from its samples computes every frame four times. A ``FeatureTrack`` runs one
kaldi-native-fbank over the whole stream instead and hands each window the
frames it covers. That is exact, not an approximation:

- a Kaldi frame depends only on its own 400 samples (pre-emphasis, DC removal
  and the window are all within the frame; dither is 0), so a frame of the
  stream is bit for bit the frame of a window that starts where it starts;
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

import kaldi_native_fbank as knf
import numpy as np

from vggvox.audio import SAMPLE_RATE, to_float
from vggvox.frontend import fbank_options
from vggvox.modelcard import FrontEnd, ModelCard
from vggvox.stream.tail import Tail


class FeatureTrack:
    """Raw (not mean-normalised) fbank frames of one stream, on its absolute sample clock."""

    def __init__(self, fe: FrontEnd) -> None:
        self.fe = fe
        self.shift = round(fe.frame_shift_ms * SAMPLE_RATE / 1000)
        self.length = round(fe.frame_length_ms * SAMPLE_RATE / 1000)
        # Frames by index since the origin; 1000 (10 s) to start with, it grows if kept longer.
        self._frames = Tail(1000, (fe.num_mel_bins,), np.float32)
        self.reset(0)

    @classmethod
    def for_card(cls, card: ModelCard) -> FeatureTrack | None:
        """A track for the card's front-end, or None where frames cannot be shared."""
        if card.input_kind != "features" or card.volume_norm_dbfs is not None:
            return None
        if card.frontend.dither != 0:
            return None  # random dither: no two computations of a frame agree
        return cls(card.frontend)

    def reset(self, origin: int) -> None:
        """Start again: the next sample pushed is number ``origin`` of the stream."""
        self.origin = origin
        self._fbank = knf.OnlineFbank(fbank_options(self.fe))
        self._frames.reset(0)

    def push(self, pcm: np.ndarray) -> None:
        """Feed the stream's next int16 samples and fetch the frames they complete."""
        self._fbank.accept_waveform(SAMPLE_RATE, to_float(pcm))
        have = self._frames.end
        ready = self._fbank.num_frames_ready
        if ready > have:
            self._frames.append(np.array([self._fbank.get_frame(i) for i in range(have, ready)],
                                         dtype=np.float32))
            self._fbank.pop(ready - have)  # knf keeps indices; it need not keep the frames

    def frames(self, start: int, end: int) -> np.ndarray | None:
        """The frames of window [start, end), or None if it is off the grid or not kept."""
        offset = start - self.origin
        if offset < 0 or offset % self.shift or end - start < self.length:
            return None
        first = offset // self.shift
        count = (end - start - self.length) // self.shift + 1
        return self._frames.get(first, first + count)

    def trim(self, keep_from: int) -> None:
        """Forget frames that start before sample ``keep_from`` (no window needs them)."""
        self._frames.drop_before((keep_from - self.origin) // self.shift)
