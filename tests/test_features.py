"""The stream's fbank frames, computed once (FeatureTrack), against each window's own.

The claim is equality, bit for bit, not closeness: a window's frames cut from the
stream's track are the frames kaldi_fbank computes from the window's samples, so
the network sees the same input and the decisions cannot differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggvox.audio import load_audio, to_float, to_int16
from vggvox.embedder import Embedder
from vggvox.frontend import kaldi_fbank, mean_normalize
from vggvox.modelcard import load_card, resolve_card
from vggvox.stream.features import FeatureTrack
from vggvox.stream.recognizer import Recognizer, RecognizerConfig, embed_windows
from vggvox.stream.segmenter import Segmenter, Window
from vggvox.stream.tail import Tail
from vggvox.stream.windows import WindowConfig
from vggvox.voiceprints import VoiceprintSet


def _speech(voices: dict[str, list[Path]]) -> np.ndarray:
    """Twenty-odd seconds of speech and pauses, two voices, as int16."""
    pause = np.zeros(8000, dtype=np.float32)
    parts = [p for paths in zip(*voices.values(), strict=True) for p in paths]
    return to_int16(np.concatenate([x for p in parts for x in (load_audio(p), pause)]))


def _windows(pcm: np.ndarray, blocks: list[int], config: WindowConfig | None = None,
             jump_at: int | None = None) -> list[Window]:
    card = load_card(resolve_card("campplus-int8"))
    seg = Segmenter(windows=config, features=FeatureTrack.for_card(card))
    out, pos, i = [], 0, 0
    while pos < len(pcm):
        n = blocks[i % len(blocks)]
        start = pos
        if jump_at is not None and start >= jump_at:
            start, jump_at = start + 7, None  # 7 samples lost upstream: a new, odd origin
        out += seg.push(pcm[pos:pos + n], start if start != pos else None)
        pos, i = pos + n, i + 1
    out += seg.finish()
    return [w for w in out if isinstance(w, Window)]


def _check_equal(windows: list[Window]) -> int:
    fe = load_card(resolve_card("campplus-int8")).frontend
    shared = 0
    for w in windows:
        if w.features is None:
            continue
        shared += 1
        whole = kaldi_fbank(to_float(w.samples), fe)
        assert np.array_equal(mean_normalize(w.features), whole), (w.start, w.end)
    return shared


def test_track_frames_equal_each_windows_own(voices: dict[str, list[Path]]) -> None:
    pcm = _speech(voices)
    windows = _windows(pcm, [480, 1000, 4096, 37])  # odd block sizes: framing must not care
    assert len(windows) > 20
    assert _check_equal(windows) == len(windows)  # the default schedule is on the 10 ms grid


def test_track_frames_equal_at_the_compute_size_and_past_it(voices: dict[str, list[Path]]) -> None:
    """The track computes its frames once COMPUTE_EVERY samples wait, or when a window
    asks: blocks just under, at and over that size, and far over it, change nothing."""
    from vggvox.stream.features import COMPUTE_EVERY

    pcm = _speech(voices)
    blocks = [COMPUTE_EVERY - 1, COMPUTE_EVERY, COMPUTE_EVERY + 1, 5 * COMPUTE_EVERY + 3]
    windows = _windows(pcm, blocks)
    assert len(windows) > 20
    assert _check_equal(windows) == len(windows)


def test_off_grid_windows_fall_back_to_their_samples(voices: dict[str, list[Path]]) -> None:
    pcm = _speech(voices)
    # A 0.301 s hop puts windows between frames: those must come without frames.
    windows = _windows(pcm, [1600], WindowConfig(hop_s=0.301))
    shared = _check_equal(windows)
    assert 0 < shared < len(windows)
    # A jump to an odd sample starts a new origin: the windows after it are on its grid.
    jumped = _windows(pcm, [1600], jump_at=len(pcm) // 2)
    assert _check_equal(jumped) == len(jumped)


def test_track_memory_is_bounded() -> None:
    card = load_card(resolve_card("campplus"))
    seg = Segmenter(features=FeatureTrack.for_card(card))
    rng = np.random.default_rng(0)
    for _ in range(200):  # 100 s of loud noise: one long segment, windows all along
        seg.push(to_int16(0.3 * rng.standard_normal(8000).astype(np.float32)))
    assert seg.features is not None
    assert len(seg.features._frames) <= seg._keep // seg.features.shift + 1
    # The arrays themselves never grew: appends reuse them.
    assert len(seg.features._frames._buf) == 1000 and len(seg._hist._buf) == 2 * seg._keep


def test_tail_keeps_rows_by_absolute_index() -> None:
    t = Tail(8)
    t.reset(100)
    seen = np.arange(100, 160, dtype=np.int16)
    for i in range(0, 60, 3):  # 20 appends of 3 through an array of 8: it compacts
        t.append(seen[i:i + 3])
        t.drop_before(t.end - 5)
        kept = min(5, i + 3)
        assert t.get(t.end - kept, t.end).tolist() == list(range(t.end - kept, t.end))
    assert (t.start, t.end) == (155, 160)
    assert t.get(154, 160) is None and t.get(155, 161) is None
    t.append(np.arange(160, 180, dtype=np.int16))  # more than fits: it grows
    assert t.get(155, 180).tolist() == list(range(155, 180))


def test_only_fbank_models_share_frames() -> None:
    assert FeatureTrack.for_card(load_card(resolve_card("campplus"))) is not None
    assert FeatureTrack.for_card(load_card(resolve_card("ge2e"))) is None  # fed samples


@pytest.mark.parametrize("model", ["campplus", "campplus-int8"])
def test_embeddings_from_frames_and_batched_equal_single(
        model: str, voices: dict[str, list[Path]]) -> None:
    embedder = Embedder.from_card(model)
    windows = _windows(_speech(voices), [1600])[:9]
    batched = embed_windows(embedder, windows)  # from frames, equal shapes in one call
    for w, b in zip(windows, batched, strict=True):
        alone = embedder.embed(to_float(w.samples))  # from samples, one at a time
        np.testing.assert_allclose(b, alone, rtol=0, atol=2e-6 if model == "campplus" else 0)


def test_recognizer_decides_the_same_with_and_without_the_track(
        voices: dict[str, list[Path]]) -> None:
    embedder = Embedder.from_card("campplus-int8")
    vp = VoiceprintSet(embedder.card.embedding_size, embedder.tag)
    for name, paths in voices.items():
        vp.add(name, embedder.embed(load_audio(paths[0])))
    pcm = _speech(voices)
    runs = []
    for track in (True, False):
        rec = Recognizer(embedder, vp, RecognizerConfig())
        if not track:
            rec.segmenter.features = None
        results = []
        for i in range(0, len(pcm), 4000):
            results += rec.feed(pcm[i:i + 4000])
        results += rec.finish()
        runs.append(results)
    assert runs[0] == runs[1]
