"""The streaming engine as a library, in-process: real speech, the real model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vggvox.audio import load_audio, to_int16
from vggvox.embedder import Embedder
from vggvox.enrollment import EnrollmentError, enroll
from vggvox.eval.engine import recognize, turn_timeline
from vggvox.stream.decider import TurnConfig, TurnDecider
from vggvox.stream.identify import OpenSetIdentifier
from vggvox.stream.recognizer import Recognizer
from vggvox.stream.results import SpeechEnded, SpeechStarted, TurnUpdate, WindowScore
from vggvox.stream.segmenter import Segmenter, Window
from vggvox.stream.vad import SpeechEnd, SpeechStart
from vggvox.voiceprints import VoiceprintSet


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.from_card("campplus")


def clip(fixtures: Path, name: str) -> np.ndarray:
    return load_audio(next(fixtures.glob(f"{name}.wav")))


def enrolled(embedder: Embedder, fixtures: Path, clips: dict[str, list[str]]) -> VoiceprintSet:
    vp = VoiceprintSet(embedder.card.embedding_size, embedder.tag)
    for name, files in clips.items():
        e = enroll(embedder, name, [clip(fixtures, f) for f in files], min_speech_s=2.0)
        vp.add(name, e.embeddings)
    return vp


def finals(results: list) -> list[TurnUpdate]:
    return [r for r in results if isinstance(r, TurnUpdate) and r.final]


# ---------------------------------------------------------------- on real speech


def test_turns_of_a_real_two_speaker_stream(embedder: Embedder, fixtures_dir: Path) -> None:
    vp = enrolled(embedder, fixtures_dir, {"ls-3005": ["ls-3005__3005-163389-0000"],
                                           "ls-3331": ["ls-3331__3331-159605-0000"]})
    audio = load_audio(fixtures_dir / "stream_2spk.wav")
    results = recognize(Recognizer(embedder, vp), audio)
    turns = finals(results)
    # A B A B with 0.5 s pauses: a turn per speech segment (the first speaker pauses
    # once inside hers), each named right.
    names = [t.speaker for t in turns]
    merged = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    assert merged == ["ls-3005", "ls-3331", "ls-3005", "ls-3331"]
    assert [t.turn for t in turns] == list(range(1, len(turns) + 1))
    for start in [0.0, 5.5, 11.0, 13.97]:
        assert any(abs(t.t_start - start) < 0.5 for t in turns), start
    # Every turn opens with a non-final update and its last update is the final one.
    for t in turns:
        mine = [r for r in results if isinstance(r, TurnUpdate) and r.turn == t.turn]
        assert not mine[0].final and mine[-1] is t and 0 <= t.confidence <= 1
    kinds = {type(r) for r in results}
    assert {SpeechStarted, SpeechEnded, WindowScore, TurnUpdate} <= kinds


def test_a_change_inside_one_speech_segment_is_detected(embedder: Embedder,
                                                        fixtures_dir: Path) -> None:
    vp = enrolled(embedder, fixtures_dir, {"vctk-p225": ["vctk-p225__p225_003"],
                                           "vctk-p226": ["vctk-p226__p226_003"]})
    a = np.concatenate([clip(fixtures_dir, "vctk-p225__p225_008"),
                        clip(fixtures_dir, "vctk-p225__p225_011")])
    b = np.concatenate([clip(fixtures_dir, "vctk-p226__p226_005"),
                        clip(fixtures_dir, "vctk-p226__p226_008")])
    # Trim the silence at the join, so that no pause separates the two voices.
    a = a[: np.flatnonzero(np.abs(a) > 0.02)[-1]]
    b = b[np.flatnonzero(np.abs(b) > 0.02)[0] :]
    change = len(a) / 16000
    results = recognize(Recognizer(embedder, vp), np.concatenate([a, b]))
    segments = [r for r in results if isinstance(r, SpeechEnded)]
    turns = finals(results)
    assert len(segments) == 1, "the join must not be a pause"
    assert [t.speaker for t in turns] == ["vctk-p225", "vctk-p226"]
    assert abs(turns[1].t_start - change) <= 0.5
    assert turns[0].t_end == turns[1].t_start


def test_block_size_does_not_change_the_results(embedder: Embedder, fixtures_dir: Path) -> None:
    vp = enrolled(embedder, fixtures_dir, {"ls-3005": ["ls-3005__3005-163389-0000"]})
    audio = load_audio(fixtures_dir / "stream_2spk.wav")
    small = recognize(Recognizer(embedder, vp), audio, block_s=0.01)
    large = recognize(Recognizer(embedder, vp), audio, block_s=1.37)
    assert small == large


def test_enrollment_needs_enough_speech(embedder: Embedder, fixtures_dir: Path) -> None:
    x = clip(fixtures_dir, "vctk-p225__p225_003")
    with pytest.raises(EnrollmentError, match="too little speech"):
        enroll(embedder, "p225", [x], min_speech_s=30.0)
    with pytest.raises(EnrollmentError, match="too little speech"):
        enroll(embedder, "p225", [np.zeros(48000, np.float32)], min_speech_s=0.5)
    e = enroll(embedder, "p225", [x, x], sources=["a", "b"], min_speech_s=3.0)
    assert e.embeddings.shape == (2, 192) and e.sources == ["a", "b"] and e.speech_s > 3.0


# ---------------------------------------------------------------- units


def test_segmenter_windows_carry_their_own_samples() -> None:
    seg = Segmenter()
    rng = np.random.default_rng(0)
    # Loud noise reads as speech to webrtcvad: 4 s of it between silences.
    x = np.concatenate([np.zeros(16000), rng.uniform(-0.5, 0.5, 64000), np.zeros(16000)])
    pcm = to_int16(x)
    items = []
    for i in range(0, len(pcm), 700):
        items += seg.push(pcm[i : i + 700])
    items += seg.finish()
    windows = [i for i in items if isinstance(i, Window)]
    assert isinstance(items[0], SpeechStart) and isinstance(items[-1], SpeechEnd)
    assert windows and all(np.array_equal(w.samples, pcm[w.start : w.end]) for w in windows)


def test_segmenter_closes_a_segment_over_lost_audio() -> None:
    seg = Segmenter()
    noise = to_int16(np.random.default_rng(1).uniform(-0.5, 0.5, 32000))
    items = seg.push(noise)
    assert seg.in_speech
    after = seg.push(noise, start=100_000)  # 68000 samples lost upstream
    assert isinstance(next(i for i in after if not isinstance(i, Window)), SpeechEnd)
    with pytest.raises(ValueError, match="must not go back"):
        seg.push(noise, start=0)
    assert items


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_decider_hysteresis_and_blips() -> None:
    vp = VoiceprintSet(3)
    vp.add("a", unit([1, 0, 0]))
    vp.add("b", unit([0, 1, 0]))
    decider = TurnDecider(OpenSetIdentifier.fixed(vp, 0.5), TurnConfig(change_windows=2), 0.3, 3)
    decider.speech_start(SpeechStart(0))
    hop = 8000

    def window(k: int, v: list[float]) -> list:
        w = Window(max(0, k * hop - 32000), k * hop, np.zeros(1, np.int16))
        return decider.window(w, unit(v))

    out = []
    for k in range(2, 8):
        out += window(k, [1, 0.1, 0])
    out += window(8, [0, 1, 0])  # one odd window: a blip, no change
    for k in range(9, 12):
        out += window(k, [1, 0.1, 0])
    out += window(12, [0, 1, 0]) + window(13, [0, 1, 0]) + window(14, [0, 1, 0.1])
    out += decider.speech_end(SpeechEnd(15 * hop))
    done = finals(out)
    assert [t.speaker for t in done] == ["a", "b"]
    assert done[0].windows == 9  # the blip was not added to the turn
    # The change lies between the last agreeing window's centre and the first odd one's.
    assert 11 * hop - 16000 <= done[1].start <= 12 * hop - 16000
    assert done[0].end == done[1].start and done[1].end == 15 * hop


def test_voiceprint_set_add_remove_search() -> None:
    vp = VoiceprintSet(3, "m")
    vp.add("a", np.stack([unit([1, 0, 0]), unit([1, 0.2, 0])]))
    vp.add("b", unit([0, 1, 0]))
    snap = vp.snapshot()
    assert vp.names == ("a", "b") and "a" in vp and len(vp) == 2
    assert [m.name for m in vp.search(unit([0.1, 1, 0]), k=2)] == ["b", "a"]
    assert vp.remove("a") and not vp.remove("a") and vp.names == ("b",)
    assert snap.names == ("a", "b"), "a snapshot never changes under a reader"
    with pytest.raises(ValueError, match="size 2"):
        vp.add("c", np.ones(2))


def test_turn_timeline_reads_results_and_wire_events() -> None:
    upd = TurnUpdate(0, 16000, 1, "a", None, 0.9, 1.0, [], True, 3)
    wire = {"type": "turn", "t_start": 0.0, "t_end": 1.0, "speaker": "a", "final": True}
    assert turn_timeline([upd]) == turn_timeline([wire])


def test_segmenter_gives_the_same_items_whatever_the_blocks() -> None:
    """A window is due when its last sample is judged by the VAD, not merely received:
    with blocks that end inside a VAD frame, a window running into the pause after a
    segment came out before the segment's end (20 ms capture blocks, 30 ms frames)."""
    rng = np.random.default_rng(7)
    parts = []
    for _ in range(30):  # bursts that webrtcvad hears as speech, and pauses
        parts += [rng.uniform(-0.5, 0.5, int(rng.integers(8000, 48000))),
                  np.zeros(int(rng.integers(3000, 16000)))]
    pcm = to_int16(np.concatenate(parts))

    def items(sizes: Iterator[int]) -> list[tuple[str, int, int]]:
        seg, out, i = Segmenter(), [], 0
        while i < len(pcm):
            n = next(sizes)
            out += seg.push(pcm[i : i + n])
            i += n
        out += seg.finish()
        return [(type(o).__name__, getattr(o, "start", getattr(o, "sample", 0)),
                 getattr(o, "end", 0)) for o in out]

    frames = items(itertools.repeat(480))
    assert sum(1 for k, _, _ in frames if k == "SpeechEnd") >= 20
    assert items(itertools.repeat(320)) == frames
    assert items(itertools.repeat(16000)) == frames
    assert items(iter(np.random.default_rng(1).integers(1, 2000, len(pcm)).tolist())) == frames
