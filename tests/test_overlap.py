"""The speaker-segmentation model (segmentation-3.0) on real speech: its card and
file, its pinned output, and overlap, speech and changes found where they are."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.errors import ModelError
from vggvox.modelcard import load_card, load_segmentation_card, resolve_card, sha256_of
from vggvox.recording.overlap import Segmentation

# log-probabilities of frames 60, 330 and 450 of stream_2spk.wav's first 10 s, and their
# mean over the chunk's 589 frames (weights/export_segmentation.py's export, onnxruntime).
PINNED_FRAMES = [60, 330, 450]
PINNED = np.array([
    [-8.1601, -9.2321, -0.0012, -9.3005, -8.7556, -16.2312, -7.5457],
    [-0.0367, -8.2433, -3.3888, -6.3227, -10.2791, -13.4362, -8.7190],
    [-5.2953, -7.5507, -9.2768, -0.0059, -13.1286, -9.1626, -8.5810],
    [-5.0509, -8.8247, -3.7627, -5.3783, -10.0037, -12.4955, -7.3350],
])


@pytest.fixture(scope="module")
def seg() -> Segmentation:
    return Segmentation.from_card("segmentation-3.0")


def clip(fixtures: Path, name: str) -> np.ndarray:
    return load_audio(fixtures / f"{name}.wav")


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def test_card_and_file(seg: Segmentation) -> None:
    card = load_segmentation_card(resolve_card("segmentation-3.0"))  # verifies the sha256
    assert sha256_of(card.path) == card.sha256 and card.license == "MIT"
    assert card.chunk_samples == 10 * SAMPLE_RATE and card.frames == 589
    assert card.powerset == ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
    (inp,), (out,) = seg.session.get_inputs(), seg.session.get_outputs()
    assert (inp.name, inp.shape[1:]) == (card.input_name, [1, card.chunk_samples])
    assert (out.name, out.shape[1:]) == (card.output_name, [card.frames, len(card.powerset)])
    assert 4e6 < card.path.stat().st_size < 8e6
    with pytest.raises(ModelError, match="not a speaker-embedding one"):
        load_card(resolve_card("segmentation-3.0"))


def test_altered_file_is_refused(tmp_path: Path) -> None:
    card = resolve_card("segmentation-3.0")
    data = yaml.safe_load(card.read_text())
    shutil.copy(card.parent / data["file"], tmp_path / data["file"])
    (tmp_path / card.name).write_text(yaml.safe_dump({**data, "sha256": "0" * 64}))
    with pytest.raises(ModelError, match="sha256"):
        Segmentation.from_card(tmp_path / card.name)


def test_pinned_output(seg: Segmentation, fixtures_dir: Path) -> None:
    """Catches a changed export without torch: a few numbers of a real chunk."""
    x = clip(fixtures_dir, "stream_2spk")[: 10 * SAMPLE_RATE]
    lp = seg.log_probs(x[None])[0]
    assert lp.shape == (589, 7)
    got = np.vstack([lp[PINNED_FRAMES], lp.mean(0)])
    np.testing.assert_allclose(got, PINNED, atol=1e-3)


def test_one_speaker_has_no_overlap(seg: Segmentation, fixtures_dir: Path) -> None:
    x = np.concatenate([clip(fixtures_dir, f"ls-3005__3005-163389-000{i}") for i in range(3)])
    act = seg.activity(x)
    duration = len(x) / SAMPLE_RATE
    assert act.count.shape == act.times.shape == act.overlap.shape
    assert act.count.dtype == np.uint8 and 0 <= act.overlap.min() <= act.overlap.max() <= 1
    assert abs(act.times[-1] - duration) < 0.05 and act.local.shape[1:] == (589, 3)
    assert act.overlaps() == []
    assert sum(b - a for a, b in act.speech()) > 0.7 * duration


def test_two_voices_at_once_are_overlap(seg: Segmentation, fixtures_dir: Path) -> None:
    """One voice, then a second one over it from 2 s to the first one's end, then the
    second alone: the overlap is found where it is, and the changes at its edges."""
    a = clip(fixtures_dir, "ls-3005__3005-163389-0000")
    b = clip(fixtures_dir, "vctk-p226__p226_003")
    mix = np.zeros(len(a) + len(b), np.float32)
    start = 2 * SAMPLE_RATE
    mix[: len(a)] += a
    mix[start:start + len(b)] += 0.8 * b
    truth = (2.0, len(a) / SAMPLE_RATE)
    act = seg.activity(mix)
    found = act.overlaps()
    assert len(found) == 1 and iou(found[0], truth) > 0.8, found
    assert seg.overlaps(mix) == found
    assert any(abs(c - truth[0]) < 0.3 for c in act.changes())
    assert any(abs(c - truth[1]) < 0.3 for c in act.changes())


def test_changes_between_turns(seg: Segmentation, fixtures_dir: Path) -> None:
    """stream_2spk: two speakers in turns (its RTTM); a change in each pause between
    them, none inside a turn."""
    x = clip(fixtures_dir, "stream_2spk")
    turns = [tuple(map(float, line.split()[3:5]))
             for line in (fixtures_dir / "stream_2spk.rttm").read_text().splitlines()]
    ends = [s + d for s, d in turns]
    pauses = [(ends[i], turns[i + 1][0]) for i in range(len(turns) - 1)]
    changes = seg.changes(x)
    assert len(changes) == len(pauses), changes
    for (a, b), c in zip(pauses, changes, strict=True):
        assert a - 0.3 < c < b + 0.3, (changes, pauses)
    assert seg.overlaps(x) == []


@pytest.mark.parametrize("samples", [0, 1, 400, SAMPLE_RATE // 2])
def test_empty_short_and_silent_input(seg: Segmentation, samples: int) -> None:
    x = np.zeros(samples, np.float32)
    act = seg.activity(x)
    assert act.count.shape == act.times.shape and not act.count.any()
    assert seg.overlaps(x) == [] and seg.speech(x) == [] and act.changes() == []


def test_silence_between_speech(seg: Segmentation, fixtures_dir: Path) -> None:
    """12 s of silence, then a clip: speech is found only where the clip is."""
    x = clip(fixtures_dir, "vctk-p225__p225_003")
    audio = np.concatenate([np.zeros(12 * SAMPLE_RATE, np.float32), x])
    speech = seg.speech(audio)
    assert speech and speech[0][0] > 11.9 and seg.overlaps(audio) == []
