"""vggvox_client/jobs.py: several lists in one run of the workers, longest first, same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reference_signal import reference_signal
from vggvox.modelcard import resolve_card
from vggvox_client.jobs import JobSettings, Request, _longest_first, embed_files, embed_together

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
    st = JobSettings(CARD)
    order = [p for p, _ in _longest_first([(p, st) for p in [*clips, missing]])]
    assert order == [clips[1], clips[3], clips[2], clips[0], missing]


def test_two_lists_in_one_run_embed_as_separate_runs_do(clips: list[Path]) -> None:
    """An enroll list (speech check) and a test list sharing a file: each gets its own
    embedding of it, as two in-process runs give, and a shared file is computed once
    per way of embedding it."""
    enroll, test = JobSettings(CARD, check_speech=True), JobSettings(CARD)
    lists = [clips[:3], clips[1:]]
    alone = [embed_files(ps, st, workers=1) for ps, st in zip(lists, (enroll, test), strict=True)]
    together = embed_together([Request(lists[0], enroll), Request(lists[1], test),
                               Request(lists[1][::-1], test)], workers=2)
    for a, b in zip([*alone, alone[1]], together, strict=True):
        assert set(a) == set(b)
        for p in a:
            assert a[p].reason == b[p].reason
            if a[p].embedding is None:  # the speech check may refuse a synthetic clip
                assert b[p].embedding is None
            else:
                np.testing.assert_array_equal(a[p].embedding, b[p].embedding)
    assert all(e.embedding is not None for e in together[1].values())


def test_requests_of_two_models_are_refused(clips: list[Path]) -> None:
    with pytest.raises(ValueError, match="more than one model"):
        embed_together([Request(clips, JobSettings(CARD)),
                        Request(clips, JobSettings(resolve_card("ge2e")))], workers=2)
