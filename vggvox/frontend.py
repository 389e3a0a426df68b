"""Front-end stages between 16 kHz samples and the network's input (which a card's
front-end kind uses: ``vggvox.frontend_kinds``).

- ``kaldi_fbank``: Kaldi filterbank features (``Fbank``), the same as
  kaldi-native-fbank's (and so Kaldi's and torchaudio.compliance.kaldi's).
- ``normalize_volume``: GE2E's level normalisation.
- ``partial_windows``: GE2E's 1.6 s partials, the exact slicing of
  resemblyzer's ``embed_utterance``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import kaldi_native_fbank as knf
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vggvox.audio import SAMPLE_RATE, dbfs

if TYPE_CHECKING:  # the card reads its front-end kinds (frontend_kinds), which use these
    from vggvox.frontend_kinds import FrontEnd
    from vggvox.modelcard import Partials

FRAMES_PER_BLOCK = 1000
"""Frames computed per numpy pass (10 s of audio, ~2 MB of temporaries): bounds the
memory a long clip takes and how long one pass holds the GIL."""


def fbank_options(fe: FrontEnd) -> knf.FbankOptions:
    """kaldi-native-fbank's options for a card's front-end."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = fe.frame_length_ms
    opts.frame_opts.frame_shift_ms = fe.frame_shift_ms
    opts.frame_opts.window_type = fe.window
    opts.frame_opts.preemph_coeff = fe.preemphasis
    opts.frame_opts.dither = fe.dither
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = fe.num_mel_bins
    return opts


class Fbank:
    """Kaldi fbank frames of one front-end, computed many frames per numpy call.

    kaldi-native-fbank's ``OnlineFbank`` computes one frame at a time in C++:
    1.6-2.5 ms per second of audio on this project's 2-core machine, as much as a
    third of an int8 CAM++ embedding (docs/benchmarks.md). This class takes Kaldi's
    window function and mel banks from kaldi-native-fbank (``fbank_options``, so
    both read the card the same way) and runs Kaldi's steps on a block of frames at
    once: dither, DC offset removal, pre-emphasis, window, zero-padding to a power
    of two, power spectrum, mel banks, log floored at float32's epsilon. That takes
    2-2.5 times less time; ``tests/test_fbank.py`` checks it against OnlineFbank.

    Each frame is computed from its own samples alone, in the same way whatever
    else is in the block: the FFT runs row by row, and the mel banks are one small
    product per frame (a stacked matmul), not one GEMM over the block, whose
    blocking rounds a row differently with the number of rows (seen at 4 rows).
    So a frame comes out bit for bit the same however many are computed together,
    which the stream's FeatureTrack relies on. Stateless; safe to share between threads.
    """

    def __init__(self, fe: FrontEnd) -> None:
        opts = fbank_options(fe)
        self.length = round(fe.frame_length_ms * SAMPLE_RATE / 1000)
        self.shift = round(fe.frame_shift_ms * SAMPLE_RATE / 1000)
        self.window = np.asarray(knf.FeatureWindowFunction(opts.frame_opts).window,
                                 dtype=np.float32)
        # (bins, fft/2 + 1): the FFT size is the one kaldi-native-fbank pads to.
        banks = np.asarray(knf.MelBanks(opts.mel_opts, opts.frame_opts, 1.0).get_matrix(),
                           dtype=np.float32)
        self.mel = np.ascontiguousarray(banks.T)
        self.fft_size = 2 * (banks.shape[1] - 1)
        self.bins = banks.shape[0]
        # Kaldi keeps its options in float32: the coefficient is 0.97000003, not 0.97.
        self.preemphasis = np.float32(opts.frame_opts.preemph_coeff)
        self.dither = float(opts.frame_opts.dither)
        self.floor = np.float32(opts.eps)
        if len(self.window) != self.length or self.fft_size < self.length:
            raise ValueError(f"fbank: unexpected frame sizes for {fe}")

    def count(self, n_samples: int) -> int:
        """Frames in ``n_samples`` samples: those that end within them (snip_edges)."""
        return 0 if n_samples < self.length else 1 + (n_samples - self.length) // self.shift

    def frames(self, x: np.ndarray) -> np.ndarray:
        """Raw log-mel frames (not mean-normalised) of samples ``x``: (frames, bins), float32."""
        n = self.count(len(x))
        out = np.empty((n, self.bins), dtype=np.float32)
        if n:
            rows = sliding_window_view(np.asarray(x, dtype=np.float32), self.length)[::self.shift]
            for lo in range(0, n, FRAMES_PER_BLOCK):
                hi = min(n, lo + FRAMES_PER_BLOCK)
                out[lo:hi] = self._block(rows[lo:hi])
        return out

    def _block(self, rows: np.ndarray) -> np.ndarray:
        if self.dither:  # Kaldi dithers each frame's copy of its samples on its own
            noise = np.random.default_rng().standard_normal(rows.shape, dtype=np.float32)
            rows = rows + np.float32(self.dither) * noise
        centred = rows - rows.mean(axis=1, keepdims=True, dtype=np.float32)
        c = self.preemphasis
        padded = np.zeros((len(rows), self.fft_size), dtype=np.float32)
        padded[:, 1:self.length] = centred[:, 1:] - c * centred[:, :-1]
        padded[:, 0] = centred[:, 0] - c * centred[:, 0]
        padded[:, :self.length] *= self.window
        spectrum = np.fft.rfft(padded, axis=1)
        power = np.square(spectrum.real)
        power += np.square(spectrum.imag)
        mel = np.matmul(power[:, None, :], self.mel)[:, 0]
        return np.log(np.maximum(mel, self.floor, out=mel), out=mel)


@lru_cache(maxsize=8)
def fbank_for(fe: FrontEnd) -> Fbank:
    """The ``Fbank`` of a front-end (built once: the mel banks take ~1 ms)."""
    return Fbank(fe)


def kaldi_fbank(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Log-mel filterbank features, shape (frames, bins), float32."""
    feats = fbank_for(fe).frames(x)
    return mean_normalize(feats) if fe.mean_norm else feats


def mean_normalize(feats: np.ndarray) -> np.ndarray:
    """Subtract each bin's mean over the frames (per utterance, or per window)."""
    if not len(feats):
        return feats
    return feats - feats.mean(axis=0, keepdims=True)


def normalize_volume(x: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Raise (never lower) the RMS level to ``target_dbfs``."""
    level = dbfs(x)
    if not np.isfinite(level) or level >= target_dbfs:
        return x
    return (x * 10 ** ((target_dbfs - level) / 20)).astype(np.float32)


def partial_starts(n_samples: int, p: Partials) -> list[int]:
    """Start sample of each partial, as resemblyzer's compute_partial_slices."""
    n_frames = int(np.ceil((n_samples + 1) / p.hop_samples))
    frame_step = max(1, round(SAMPLE_RATE / p.rate / p.hop_samples))
    steps = max(1, n_frames - p.frames + frame_step + 1)
    starts = [i * p.hop_samples for i in range(0, steps, frame_step)]
    coverage = (n_samples - starts[-1]) / p.samples
    if coverage < p.min_coverage and len(starts) > 1:
        starts.pop()
    return starts


def partial_windows(x: np.ndarray, p: Partials) -> np.ndarray:
    """Cut ``x`` into partials, each with its context: shape (partials, samples)."""
    starts = partial_starts(len(x), p)
    ctx = p.context_samples
    end = starts[-1] + p.samples
    padded = np.zeros(ctx + max(end, len(x)) + ctx, dtype=np.float32)
    padded[ctx : ctx + len(x)] = x
    width = p.samples - p.hop_samples + 2 * ctx
    return np.stack([padded[s : s + width] for s in starts])
