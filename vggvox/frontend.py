"""Front-end stages between 16 kHz samples and the network's input.

- ``kaldi_fbank``: Kaldi filterbank features through kaldi-native-fbank, which
  reproduces Kaldi's (and torchaudio.compliance.kaldi's) fbank.
- ``normalize_volume``: GE2E's level normalisation.
- ``partial_windows``: GE2E's 1.6 s partials, the exact slicing of
  resemblyzer's ``embed_utterance``.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np

from vggvox.audio import SAMPLE_RATE, dbfs
from vggvox.modelcard import FrontEnd, Partials

FEED_SAMPLES = SAMPLE_RATE
"""Samples handed to kaldi-native-fbank per call."""


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


def kaldi_fbank(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Log-mel filterbank features, shape (frames, bins), float32."""
    fbank = knf.OnlineFbank(fbank_options(fe))
    # Fed a second at a time: the binding converts its input holding the GIL, which
    # for a 110 s clip stalled every other thread of the daemon for ~220 ms (status
    # replies during an enrollment). The features are identical either way.
    for start in range(0, len(x), FEED_SAMPLES):
        fbank.accept_waveform(SAMPLE_RATE, x[start:start + FEED_SAMPLES])
    fbank.input_finished()
    n = fbank.num_frames_ready
    feats = np.empty((n, fe.num_mel_bins), dtype=np.float32)
    for i in range(n):
        feats[i] = fbank.get_frame(i)
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
