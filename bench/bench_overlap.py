"""The segmentation model's cost on one core, and a quick look at what it finds.

    .venv/bin/python bench/bench_overlap.py [--minutes 3] [--steps 1 2.5 5] [--core 0]
        [--seed 0] [--truth-db 40] [--threshold 0.3]

Pins itself to one core (``--core``; as ``taskset -c 0``) with one onnxruntime
thread, builds a conversation with overlaps from ../shared/data/speech
(LibriSpeech test-other and VCTK voices taking turns; about half the turns start
0.5-2.5 s before the previous one ends, the newcomer mixed 0-6 dB below; AMI is
left out: the model was trained on it), and for each chunk step prints:

- seconds of compute per minute of audio, and the real-time factor;
- overlap detection precision and recall (pyannote.metrics, collar 0 and 0.25 s)
  of ``overlaps()`` (probability of two voices >= ``--threshold``), and at collar 0
  of the rounded speaker count >= 2, against the truth from each voice's own
  energy (10 ms frames within ``--truth-db`` of its loudest: 40 keeps quiet
  onsets and tails as speech, 30 a little less);
- speaker change precision and recall (pyannote.metrics, 0.5 s tolerance).

pyannote's own pipelines slide the 10 s chunks by 1 s (``--steps 1``). This is
a self-made mix for a quick check, not the evaluation on built conversations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from benchkit import SPEECH
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.detection import DetectionPrecision, DetectionRecall
from pyannote.metrics.segmentation import SegmentationPrecision, SegmentationRecall

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.recording.overlap import OVERLAP_THRESHOLD, Segmentation

HOP = SAMPLE_RATE // 100  # the truth's 10 ms frames


def voiced(x: np.ndarray, below_db: float) -> np.ndarray:
    """10 ms frames of one clean voice with speech: within ``below_db`` of its loudest
    frame, pauses under 0.25 s bridged, bursts under 0.1 s dropped (as an annotator
    would)."""
    frames = x[: len(x) // HOP * HOP].reshape(-1, HOP)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    on = db > db.max() - below_db
    timeline = Timeline([Segment(i * 0.01, (i + 1) * 0.01) for i in np.flatnonzero(on)])
    kept = timeline.support(collar=0.25)
    mask = np.zeros(len(on), bool)
    for s in kept:
        if s.duration >= 0.1:
            mask[round(s.start * 100): round(s.end * 100)] = True
    return mask


def utterances() -> dict[str, list[Path]]:
    by_speaker: dict[str, list[Path]] = {}
    for source in ("librispeech-test-other", "vctk"):
        for f in sorted((SPEECH / source).glob("*/*.flac")):
            by_speaker.setdefault(f.parent.name, []).append(f)
    return by_speaker


def build(minutes: float, seed: int,
          below_db: float) -> tuple[np.ndarray, list[tuple[str, int, np.ndarray]]]:
    """The mix, and each turn's (speaker, first sample, voiced 10 ms frames)."""
    rng = np.random.default_rng(seed)
    pool = utterances()
    speakers = list(rng.choice(sorted(pool), 4, replace=False))
    parts: list[tuple[str, int, np.ndarray, float]] = []
    end, last = 0, ""
    while end < minutes * 60 * SAMPLE_RATE:
        who = str(rng.choice([s for s in speakers if s != last]))
        x = load_audio(pool[who][int(rng.integers(len(pool[who])))])[: 12 * SAMPLE_RATE]
        x = x / (np.sqrt(np.mean(x**2)) + 1e-9) * 0.05
        lead = rng.uniform(0.5, 2.5) if parts and rng.random() < 0.5 else -rng.uniform(0.2, 0.8)
        start = max(0, end - int(lead * SAMPLE_RATE))
        gain = 10 ** (-rng.uniform(0, 6) / 20) if lead > 0 else 1.0
        parts.append((who, start, x, gain))
        end, last = max(end, start + len(x)), who
    mix = np.zeros(end, np.float32)
    for _, start, x, gain in parts:
        mix[start:start + len(x)] += gain * x
    return mix, [(who, start, voiced(x, below_db)) for who, start, x, _ in parts]


def truth(turns: list[tuple[str, int, np.ndarray]], frames: int) -> tuple[Timeline, list[float]]:
    """Overlapped speech (2+ voices), and the change points: where one voice's speech
    gives way to another's (the middle of the pause), or overlap starts or ends."""
    count = np.zeros(frames + 1, int)
    spans = []
    for who, start, mask in turns:
        at = start // HOP
        count[at:at + len(mask)] += mask[: frames + 1 - at]
        on = np.flatnonzero(mask)
        spans.append((who, (at + on[0]) / 100, (at + on[-1] + 1) / 100))
    edges = np.diff(np.concatenate([[0], (count >= 2).astype(int), [0]]))
    overlap = Timeline([Segment(a / 100, b / 100) for a, b in
                        zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)])
    changes = []
    for (_, _, end_a), (_, start_b, end_b) in pairwise(spans):
        changes += [start_b, min(end_a, end_b)] if start_b < end_a else [(end_a + start_b) / 2]
    return overlap, sorted(changes)


def as_annotation(timeline: Timeline) -> Annotation:
    ann = Annotation()
    for s in timeline:
        ann[s] = "overlap"
    return ann


def cut_at(points: list[float], duration: float) -> Timeline:
    """[0, duration] cut at ``points``: a timeline whose boundaries are those points."""
    edges = [0.0, *sorted(p for p in points if 0 < p < duration), duration]
    return Timeline([Segment(a, b) for a, b in pairwise(edges) if b > a])


def precision_recall(ref: Timeline, found: list[tuple[float, float]], duration: float,
                     collar: float) -> str:
    hyp = as_annotation(Timeline([Segment(a, b) for a, b in found]))
    uem = Timeline([Segment(0, duration)])
    p = DetectionPrecision(collar=collar)(as_annotation(ref), hyp, uem=uem)
    r = DetectionRecall(collar=collar)(as_annotation(ref), hyp, uem=uem)
    return f"{100 * p:5.1f}/{100 * r:5.1f}"


def measure(step: float, mix: np.ndarray, ref: Timeline, ref_changes: list[float],
            threshold: float) -> None:
    seg = Segmentation.from_card(threads=1, step_s=step)
    seg.activity(mix[: 10 * SAMPLE_RATE])  # warm-up: the first run allocates
    best = np.inf
    for _ in range(2):
        t0 = time.process_time()
        act = seg.activity(mix)
        best = min(best, time.process_time() - t0)
    duration = len(mix) / SAMPLE_RATE
    soft = act.overlaps(threshold=threshold)
    hard = act.regions(act.count >= 2, 0.1, 0.1)
    scores = [precision_recall(ref, soft, duration, 0.0),
              precision_recall(ref, soft, duration, 0.25),
              precision_recall(ref, hard, duration, 0.0)]
    ref_cut, hyp_cut = cut_at(ref_changes, duration), cut_at(act.changes(), duration)
    cp = SegmentationPrecision(tolerance=0.5)(ref_cut, hyp_cut)
    cr = SegmentationRecall(tolerance=0.5)(ref_cut, hyp_cut)
    print(f"{seg.step_s:6.3f} {60 * best / duration:9.2f} {best / duration:7.4f} "
          + " ".join(f"{x:>13s}" for x in scores) + f" {100 * cp:5.1f}/{100 * cr:5.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--steps", type=float, nargs="+", default=[1.0, 2.5, 5.0])
    parser.add_argument("--core", type=int, default=0, help="the one CPU to run on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--truth-db", type=float, default=40.0,
                        help="a voice's frames within this of its loudest are speech")
    parser.add_argument("--threshold", type=float, default=OVERLAP_THRESHOLD,
                        help="overlaps(): probability of two voices at least this")
    args = parser.parse_args()
    if not (SPEECH / "manifest.csv").exists():
        print(f"no speech under {SPEECH}", file=sys.stderr)
        return 1
    os.sched_setaffinity(0, {args.core})
    mix, turns = build(args.minutes, args.seed, args.truth_db)
    ref, ref_changes = truth(turns, len(mix) // HOP)
    speech = sum(s.duration for s in Timeline([
        Segment((st // HOP + i) / 100, (st // HOP + i + 1) / 100)
        for _, st, m in turns for i in np.flatnonzero(m)]).support())
    print(f"mix: {len(mix) / SAMPLE_RATE:.1f} s, {len(turns)} turns, overlap "
          f"{ref.duration():.1f} s ({100 * ref.duration() / speech:.1f} % of speech), "
          f"{len(ref_changes)} changes; core {args.core}, 1 thread")
    print(f"{'step s':>6s} {'s/min':>9s} {'RTF':>7s} {'P/R p c=0':>13s} {'P/R p c=.25':>13s} "
          f"{'P/R n>=2 c=0':>13s} {'change P/R':>11s}")
    for step in args.steps:
        measure(step, mix, ref, ref_changes, args.threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
