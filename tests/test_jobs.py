"""clients/jobs.py: one worker pool for several lists, longest files first, same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reference_signal import reference_signal
from vggvox.modelcard import resolve_card
from vggvox_client.jobs import JobSettings, _longest_first, embed_files, worker_pool

CARD = resolve_card("campplus-int8")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    x = reference_signal(seconds=12.0)
    out = []
    for i, seconds in enumerate((3.0, 12.0, 5.0, 8.0)):
        path = folder / f"clip{i}.wav"
        sf.write(path, np.roll(x, 1000 * i)[: int(seconds * 16000)], 16000)
        out.append(path)
    return out


def test_longest_first(clips: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "gone.wav"
    assert _longest_first([*clips, missing]) == [clips[1], clips[3], clips[2], clips[0], missing]


def test_one_pool_serves_two_lists_as_separate_runs_do(clips: list[Path]) -> None:
    enroll, test = JobSettings(CARD, check_speech=True), JobSettings(CARD)
    alone = [embed_files(clips, s, workers=1) for s in (enroll, test)]
    with worker_pool(2, CARD) as pool:
        assert pool is not None
        shared = [embed_files(clips, s, pool=pool) for s in (enroll, test)]
    for a, b in zip(alone, shared, strict=True):
        assert set(a) == set(b) == set(clips)
        for p in clips:
            assert a[p].reason == b[p].reason
            if a[p].embedding is None:  # the speech check may refuse a synthetic clip
                assert b[p].embedding is None
            else:
                np.testing.assert_array_equal(a[p].embedding, b[p].embedding)
    assert all(e.embedding is not None for e in shared[1].values())


def test_a_pool_refuses_another_model(clips: list[Path]) -> None:
    with worker_pool(2, CARD) as pool, pytest.raises(ValueError, match="another model"):
        embed_files(clips, JobSettings(resolve_card("ge2e")), pool=pool)


def test_one_worker_means_no_pool() -> None:
    with worker_pool(1, CARD) as pool:
        assert pool is None
