"""Synthetic conversations: truth, speakers, gaps and reproducibility.

The builds use the shared speech data (they skip without it) but stay short:
40 s conversations load only about twenty utterances.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vggvox.audio import SAMPLE_RATE
from vggvox.errors import VggvoxError
from vggvox.eval import Conversation, ConversationSpec, Segment, build_conversations, read_rttm
from vggvox.eval.conversation_overlap import overlap_seconds
from vggvox.eval.conversations import LEAD_S, TAIL_S
from vggvox.eval.lists import Utterance, read_utterances
from vggvox.eval.speech import make_clip, speech_spans
from vggvox_client import conversations as cli

SPEC = ConversationSpec(n_conversations=2, duration_s=40.0, n_enrolled=3, n_strangers=1, seed=3)
HANGOVER_S = 0.3


def lists(speech_dir: Path) -> tuple[list[Utterance], list[Utterance]]:
    material, bad = read_utterances(speech_dir / "test_list.csv")
    enroll, bad_enroll = read_utterances(speech_dir / "enroll_list.csv")
    assert not bad and not bad_enroll
    return material, enroll


@pytest.fixture(scope="module")
def built(
    speech_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Conversation]]:
    out = tmp_path_factory.mktemp("convs")
    return out, build_conversations(*lists(speech_dir), SPEC, out)


def test_truth_matches_the_audio(built: tuple[Path, list[Conversation]]) -> None:
    _, convs = built
    assert len(convs) == 2
    for c in convs:
        info = sf.info(str(c.wav))
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.frames / SAMPLE_RATE == pytest.approx(c.duration_s, abs=1e-3)
        assert c.duration_s >= SPEC.duration_s
        segs = read_rttm(c.rttm)
        assert segs == list(c.segments)
        assert segs[0].start >= LEAD_S - 1e-3
        assert segs[-1].end == pytest.approx(c.duration_s - TAIL_S, abs=1e-3)
        # The truth marks speech: the audio is louder inside the segments than between them.
        x, _ = sf.read(str(c.wav), dtype="float32")
        inside = np.zeros(x.size, dtype=bool)
        for s in segs:
            inside[round(s.start * SAMPLE_RATE):round(s.end * SAMPLE_RATE)] = True
        assert np.sqrt(np.mean(x[inside] ** 2)) > 10 * np.sqrt(np.mean(x[~inside] ** 2))


def test_speakers_turns_and_strangers(built: tuple[Path, list[Conversation]]) -> None:
    _, convs = built
    for c in convs:
        assert len(c.enrolled) == SPEC.n_enrolled and len(c.strangers) == SPEC.n_strangers
        assert not set(c.enrolled) & set(c.strangers)
        assert {s.speaker for s in c.segments} == set(c.enrolled) | set(c.strangers)
        turns: dict[int, list[str]] = {}
        for p in c.placed:
            turns.setdefault(p.turn, []).append(p.speaker)
        assert sorted(turns) == list(range(len(turns)))
        for speakers in turns.values():
            assert len(set(speakers)) == 1 and 1 <= len(speakers) <= 3
        order = [turns[i][0] for i in sorted(turns)]
        assert all(a != b for a, b in itertools.pairwise(order))
        paths = [p.path for p in c.placed]
        assert len(paths) == len(set(paths)), "an utterance came back while others were unused"
    # The two conversations enroll different speakers: the material allows it.
    assert not set(convs[0].enrolled) & set(convs[1].enrolled)


def test_most_gaps_are_under_the_hangover(built: tuple[Path, list[Conversation]]) -> None:
    _, convs = built
    placed = [(a, b) for c in convs for a, b in itertools.pairwise(c.placed)]
    gaps = np.array([b.start - a.end for a, b in placed])
    changes = np.array([b.start - a.end for a, b in placed if a.speaker != b.speaker])
    assert gaps.min() >= 0
    assert np.mean(gaps < HANGOVER_S) >= 0.7
    assert np.mean(changes < HANGOVER_S) >= 0.7


def test_enroll_lists_hold_only_enrollment_utterances(
    built: tuple[Path, list[Conversation]], speech_dir: Path
) -> None:
    out, convs = built
    _, enroll = lists(speech_dir)
    enroll_paths = {u.path.resolve() for u in enroll}
    for c in convs:
        listed, bad = read_utterances(c.enroll_list)
        assert not bad and listed
        assert {u.speaker for u in listed} == set(c.enrolled)
        assert {u.path.resolve() for u in listed} <= enroll_paths
        assert not {u.path.resolve() for u in listed} & {p.path.resolve() for p in c.placed}
    index = json.loads((out / "conversations.json").read_text())
    assert [d["enrolled"] for d in index["conversations"]] == [list(c.enrolled) for c in convs]
    assert index["conversations"][1]["rttm"] == "conv1.rttm"
    assert index["spec"]["duration_s"] == SPEC.duration_s


def test_rerun_is_byte_identical(
    built: tuple[Path, list[Conversation]], speech_dir: Path, tmp_path: Path
) -> None:
    out, _ = built
    build_conversations(*lists(speech_dir), SPEC, tmp_path)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_material_that_cannot_fill_the_spec(speech_dir: Path, tmp_path: Path) -> None:
    material, enroll = lists(speech_dir)
    with pytest.raises(VggvoxError, match="enrollment utterances and material"):
        build_conversations(material, enroll, ConversationSpec(n_enrolled=500), tmp_path)
    few = [u for u in material if u.speaker in {"ls-1688", "ls-3331"}]
    with pytest.raises(VggvoxError, match="strangers"):
        build_conversations(few, enroll, ConversationSpec(n_enrolled=2, n_strangers=1), tmp_path)
    with pytest.raises(VggvoxError, match="bad conversation spec"):
        build_conversations(material, enroll, ConversationSpec(short_gap_s=(0.3, 0.1)), tmp_path)


def test_cli_run(speech_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vggvox-client")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "conversations", "--material", str(speech_dir / "test_list.csv"),
        "--enroll-list", str(speech_dir / "enroll_list.csv"), "--out", str(tmp_path),
        "--count", "1", "--duration", "30", "--enrolled", "2", "--strangers", "1",
    ])
    assert cli.run(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "conv0.wav" in lines[0] and "strangers" in lines[0]
    assert (tmp_path / "conv0.rttm").exists() and (tmp_path / "conversations.json").exists()


def tone_bursts(bursts: list[tuple[float, float]], total: float) -> np.ndarray:
    t = np.arange(round(total * SAMPLE_RATE)) / SAMPLE_RATE
    x = 1e-4 * np.random.default_rng(0).standard_normal(t.size)
    for a, b in bursts:
        on = (t >= a) & (t < b)
        x[on] += 0.3 * np.sin(2 * np.pi * 220 * t[on])
    return x.astype(np.float32)


def test_speech_spans_split_at_long_pauses_only() -> None:
    x = tone_bursts([(0.3, 1.2), (1.5, 2.4), (3.0, 3.9)], 4.5)  # pauses of 0.3 and 0.6 s
    spans = [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in speech_spans(x)]
    assert len(spans) == 2
    assert spans[0] == pytest.approx((0.3, 2.4), abs=0.03)
    assert spans[1] == pytest.approx((3.0, 3.9), abs=0.03)
    clip = make_clip(x, -26.0)
    assert clip is not None
    assert clip.seconds == pytest.approx(3.6, abs=0.06)  # trimmed to 0.3-3.9
    assert clip.spans[0][0] == 0 and clip.spans[-1][1] == clip.audio.size
    assert make_clip(np.zeros(SAMPLE_RATE, dtype=np.float32), -26.0) is None


# -- conversations with overlapped speech ---------------------------------------------------

OVERLAP_SPEC = ConversationSpec(n_conversations=2, duration_s=60.0, n_enrolled=3, n_strangers=1,
                                seed=3, overlap_fraction=0.15)


def max_voices(segments: list[Segment] | tuple[Segment, ...]) -> int:
    edges = sorted((t, d) for s in segments for t, d in ((s.start, 1), (s.end, -1)))
    return max(itertools.accumulate(d for _, d in edges))


@pytest.fixture(scope="module")
def overlapped(
    speech_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Conversation]]:
    out = tmp_path_factory.mktemp("overlapped")
    return out, build_conversations(*lists(speech_dir), OVERLAP_SPEC, out)


def test_without_overlap_the_files_are_those_of_before(
    built: tuple[Path, list[Conversation]]
) -> None:
    out, convs = built
    # The truth SPEC gave before overlaps existed (the audio follows from it and the data).
    digests = [hashlib.sha256((out / f"conv{i}.rttm").read_bytes()).hexdigest() for i in (0, 1)]
    assert digests == ["5d7a12997a1e1dd8222a8aabe51a5f37da159a608511dfc5add5d70a1b160845",
                       "f603be2368b4b9d8c272d8290b28728ae630d03bd60aae53424fdfcb31f18024"]
    index = json.loads((out / "conversations.json").read_text())
    assert "overlap_fraction" not in index["spec"] and "overlap_gain_db" not in index["spec"]
    assert not {"overlap_share", "overlaps"} & set(index["conversations"][0])
    assert all(c.overlap_share is None and not c.overlaps and max_voices(c.segments) == 1
               for c in convs)


def test_overlapped_share_and_truth(overlapped: tuple[Path, list[Conversation]]) -> None:
    out, convs = overlapped
    index = json.loads((out / "conversations.json").read_text())
    assert index["spec"]["overlap_fraction"] == 0.15
    for c, d in zip(convs, index["conversations"], strict=True):
        segs = read_rttm(c.rttm)
        assert segs == list(c.segments)
        overlap_s, speech_s = overlap_seconds(segs)
        assert 0.10 <= overlap_s / speech_s <= 0.20
        assert d["overlap_share"] == c.overlap_share == pytest.approx(overlap_s / speech_s,
                                                                      abs=1e-4)
        # Two voices at most, and nobody overlaps themself.
        assert max_voices(segs) == 2
        for name in {s.speaker for s in segs}:
            assert max_voices([s for s in segs if s.speaker == name]) == 1
        assert max(s.end for s in segs) == pytest.approx(c.duration_s - TAIL_S, abs=1e-3)
        for e in c.overlaps:  # each overlap is in the truth: both voices speak through it
            assert -6 <= e.gain_db <= 0 and e.speaker != e.other
            for name in (e.speaker, e.other):
                assert any(s.speaker == name and s.start <= e.start + 1e-3
                           and s.end >= e.end - 1e-3 for s in segs), (e, name)
    kinds = {e.kind for c in convs for e in c.overlaps}
    assert kinds == {"turn-start", "back-channel"}
    # The next speaker starts before the previous one ends: placed utterances overlap.
    assert any(b.start < a.end for c in convs for a, b in itertools.pairwise(c.placed))


def test_overlapped_rerun_is_byte_identical(
    overlapped: tuple[Path, list[Conversation]], speech_dir: Path, tmp_path: Path
) -> None:
    out, _ = overlapped
    build_conversations(*lists(speech_dir), OVERLAP_SPEC, tmp_path)
    for p in sorted(out.iterdir()):
        assert p.read_bytes() == (tmp_path / p.name).read_bytes(), p.name


def write_tone_material(root: Path) -> tuple[list[Utterance], list[Utterance], dict[str, float]]:
    """Speakers that are pure tones, one frequency each: their levels in a mix can be
    read apart."""
    freqs = {"s300": 300.0, "s500": 500.0, "s700": 700.0}
    material, enroll = [], []
    t = np.arange(6 * SAMPLE_RATE) / SAMPLE_RATE
    for name, f in freqs.items():
        folder = root / "tones" / name
        folder.mkdir(parents=True)
        for i in range(4):
            path = folder / f"{name}_{i}.wav"
            sf.write(str(path), (0.1 * np.sin(2 * np.pi * f * t + i)).astype(np.float32),
                     SAMPLE_RATE, subtype="FLOAT")
            (enroll if i == 3 else material).append(Utterance(path, name, i + 1))
    return material, enroll, freqs


def amplitude(x: np.ndarray, f: float) -> float:
    t = np.arange(x.size) / SAMPLE_RATE
    return float(2 * abs(np.sum(x * np.exp(-2j * np.pi * f * t))) / x.size)


def test_overlapping_voice_levels(tmp_path: Path) -> None:
    material, enroll, freqs = write_tone_material(tmp_path)
    spec = ConversationSpec(n_conversations=1, duration_s=60.0, n_enrolled=2, n_strangers=1,
                            seed=5, overlap_fraction=0.3, utterances_per_turn=(1, 1))
    (conv,) = build_conversations(material, enroll, spec, tmp_path / "out")
    x, _ = sf.read(str(conv.wav), dtype="float32")
    assert {e.kind for e in conv.overlaps} == {"turn-start", "back-channel"}
    for e in conv.overlaps:
        # Inside the overlap, past the trailing voice's ramp and the cuts' fades.
        mix = x[round((e.start + 0.08) * SAMPLE_RATE):round((e.end - 0.03) * SAMPLE_RATE)]
        ratio_db = 20 * np.log10(amplitude(mix, freqs[e.other]) / amplitude(mix, freqs[e.speaker]))
        assert ratio_db == pytest.approx(e.gain_db, abs=0.3), e


def test_overlap_spec_is_checked(speech_dir: Path, tmp_path: Path) -> None:
    material, enroll = lists(speech_dir)
    for bad in (ConversationSpec(overlap_fraction=0.9), ConversationSpec(overlap_fraction=-0.1),
                ConversationSpec(overlap_fraction=0.1, overlap_gain_db=(0.0, -6.0))):
        with pytest.raises(VggvoxError, match="overlap"):
            build_conversations(material, enroll, bad, tmp_path)


def test_cli_overlap(speech_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vggvox-client")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "conversations", "--material", str(speech_dir / "test_list.csv"),
        "--enroll-list", str(speech_dir / "enroll_list.csv"), "--out", str(tmp_path),
        "--count", "1", "--duration", "30", "--enrolled", "2", "--strangers", "1",
        "--overlap", "0.15",
    ])
    assert cli.run(args) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert re.search(r"two voices [\d.]+% of the speech time \(\d+ overlaps\)", line), line
    index = json.loads((tmp_path / "conversations.json").read_text())
    assert index["spec"]["overlap_fraction"] == 0.15


def test_out_that_is_a_file_is_one_line(speech_dir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """It was a FileExistsError traceback."""
    from vggvox_client.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    code = main(["conversations", "--material", str(speech_dir / "test_list.csv"),
                 "--enroll-list", str(speech_dir / "enroll_list.csv"), "--out", str(notes)])
    assert code == 2
    assert capsys.readouterr().err.strip() == \
        f"vggvox-client: error: --out {notes}: not a folder"
    assert notes.read_text() == "mine\n"
