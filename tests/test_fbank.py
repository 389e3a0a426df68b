"""The numpy Kaldi fbank (frontend.Fbank) against kaldi-native-fbank's OnlineFbank.

Two claims. It computes kaldi-native-fbank's features, to float32 rounding (the
FFT and the sums run in another order), on real speech and on the edge cases.
And a frame comes out bit for bit the same however many frames are computed
with it, which the stream's FeatureTrack (tests/test_features.py) relies on.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest

from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.frontend import FRAMES_PER_BLOCK, Fbank, fbank_for, fbank_options, kaldi_fbank
from vggvox.frontend_kinds import FrontEnd
from vggvox.modelcard import load_card, resolve_card

CARD = load_card(resolve_card("campplus-int8"))
FE = CARD.frontend
LOG_MEL_ATOL = 5e-3
"""Worst difference seen on 20 LibriSpeech files: 1.2e-3, in bins of energy e^-16."""


def reference(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """kaldi-native-fbank's raw log-mel frames of ``x``."""
    fbank = knf.OnlineFbank(fbank_options(fe))
    fbank.accept_waveform(16000, x)
    fbank.input_finished()
    return np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)],
                    dtype=np.float32).reshape(-1, fe.num_mel_bins)


def check_close(x: np.ndarray, fe: FrontEnd = FE) -> None:
    ours, ref = fbank_for(fe).frames(x), reference(x, fe)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=LOG_MEL_ATOL)
    assert np.abs(ours - ref).mean() < 1e-4


def test_equals_kaldi_native_fbank_on_real_speech(fixtures_dir: Path) -> None:
    clips = sorted(fixtures_dir.glob("ls-*.wav"))
    assert clips
    for clip in clips:
        check_close(load_audio(clip))


def test_equals_kaldi_native_fbank_on_synthetic_speech(voices: dict[str, list[Path]]) -> None:
    for paths in voices.values():
        check_close(load_audio(paths[0]))


def test_equals_kaldi_native_fbank_on_silence_and_full_scale() -> None:
    rng = np.random.default_rng(1)
    check_close(np.zeros(8000, dtype=np.float32))  # every bin at the log floor
    check_close(np.clip(rng.standard_normal(8000), -1, 1).astype(np.float32))
    check_close(np.sign(rng.standard_normal(8000)).astype(np.float32))  # clipped square


@pytest.mark.parametrize("fe", [
    replace(FE, window="hamming"), replace(FE, window="hanning"),
    replace(FE, num_mel_bins=40), replace(FE, frame_length_ms=20.0, frame_shift_ms=12.5),
    replace(FE, frame_length_ms=32.0), replace(FE, preemphasis=0.0),
])
def test_follows_the_cards_options(fe: FrontEnd) -> None:
    x = (0.1 * np.random.default_rng(2).standard_normal(16000)).astype(np.float32)
    check_close(x, fe)


def test_frame_count_at_the_edges() -> None:
    fb = fbank_for(FE)
    assert (fb.length, fb.shift) == (400, 160)
    for n, frames in [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98)]:
        assert fb.count(n) == frames
        assert fb.frames(np.zeros(n, dtype=np.float32)).shape == (frames, 80)
        assert len(reference(np.zeros(n, dtype=np.float32), FE)) == frames


def test_a_frame_is_the_same_however_many_are_computed_with_it() -> None:
    fb = Fbank(FE)
    # Longer than a block, so the block edge is crossed too.
    x = (0.1 * np.random.default_rng(3).standard_normal(
        (FRAMES_PER_BLOCK + 500) * 160 + 240)).astype(np.float32)
    whole = fb.frames(x)
    assert len(whole) == FRAMES_PER_BLOCK + 500
    for k in [*range(1, 41), 63, 64, 65, 127, 128, 129, 255, 256, 257, 999, 1000, 1001]:
        start = 0
        while start + k <= len(whole):
            part = fb.frames(x[start * 160:(start + k - 1) * 160 + 400])
            assert np.array_equal(part, whole[start:start + k]), (k, start)
            start += k + 7  # and at a new offset each time


@pytest.mark.parametrize(("model", "floor"), [("campplus", 0.99999), ("campplus-int8", 0.998)])
def test_the_embedding_is_kaldi_native_fbanks(fixtures_dir: Path, model: str,
                                              floor: float) -> None:
    """What the tolerance means for a decision. fp32 CAM++ does not move (1 - 6e-8 at
    worst on 20 clips). The int8 one rounds every activation to a step, so any input
    change of float32 rounding size moves it: features against kaldi-native-fbank's give
    0.9986 at worst; kaldi-native-fbank's own plus noise of 4e-6 gives 0.9982."""
    card = load_card(resolve_card(model))
    embedder = Embedder(card)
    for clip in sorted(fixtures_dir.glob("ls-*.wav")):
        x = load_audio(clip)
        ref = reference(x, card.frontend)
        ours = embedder.embed_inputs([kaldi_fbank(x, card.frontend)[None]])[0]
        theirs = embedder.embed_inputs([(ref - ref.mean(axis=0))[None]])[0]
        assert float(ours @ theirs) > floor, clip.name


def test_dither_is_applied_per_frame() -> None:
    fb = Fbank(replace(FE, dither=1.0))
    silent = fb.frames(np.zeros(4000, dtype=np.float32))
    assert np.all(silent > np.log(np.finfo(np.float32).eps))  # lifted off the floor
    assert not np.array_equal(silent, fb.frames(np.zeros(4000, dtype=np.float32)))
