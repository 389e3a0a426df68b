"""Embedding speed and batch throughput, as figures for the README.

    .venv/bin/python bench/bench_embed.py [--files 120] [--repeat 20]

Prints, for each shipped model with one ONNX Runtime thread:
- milliseconds per embedding of a 3 s and a 10 s window (median, front-end
  included) and the real-time factor (compute time / audio time);
- batch-offline throughput in utterances per second with 1 and 2 worker
  processes on real speech (no cache), their ratio, and peak memory (RSS).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchkit import SPEECH

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.eval.lists import read_utterances
from vggvox.modelcard import resolve_card
from vggvox_client.jobs import JobSettings, embed_files

LONG_FILE = SPEECH / "librispeech-test-other/ls-3080/3080-5032-0009.flac"


def speech_signal(seconds: float) -> np.ndarray:
    if LONG_FILE.exists():
        return load_audio(LONG_FILE)[: int(seconds * SAMPLE_RATE)]
    rng = np.random.default_rng(0)  # no data: noise has the same cost
    return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def time_embedding(embedder: Embedder, seconds: float, repeat: int) -> float:
    x = speech_signal(seconds)
    embedder.embed(x)  # warm-up: first run allocates
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        embedder.embed(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def interleaved_ratio(a: Embedder, b: Embedder, seconds: float, repeat: int) -> float:
    """Median time of b over median time of a, timed alternately, so that whatever
    else the machine does slows both alike."""
    x = speech_signal(seconds)
    a.embed(x), b.embed(x)
    ta, tb = [], []
    for _ in range(repeat):
        for e, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            e.embed(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(tb) / statistics.median(ta)


def peak_rss_mb() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def throughput(model: str, files: list[Path], workers: int) -> float:
    t0 = time.perf_counter()
    done = embed_files(files, JobSettings(resolve_card(model)), workers=workers)
    elapsed = time.perf_counter() - t0
    assert all(e.embedding is not None for e in done.values())
    return len(files) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=120, help="utterances for throughput")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["campplus-int8", "campplus", "ge2e"])
    args = parser.parse_args()

    print("embedding time, 1 thread (median; front-end included)")
    print(f"{'model':14s} {'window':>7s} {'ms':>8s} {'RTF':>7s}")
    for model in args.models:
        embedder = Embedder.from_card(model, threads=1)
        for seconds in (3.0, 10.0):
            ms = time_embedding(embedder, seconds, args.repeat)
            print(f"{model:14s} {seconds:6.0f}s {ms:8.1f} {ms / 1000 / seconds:7.4f}")
    if {"campplus", "campplus-int8"} <= set(args.models):
        fp32, int8 = Embedder.from_card("campplus"), Embedder.from_card("campplus-int8")
        ratios = [f"{s:g} s {interleaved_ratio(fp32, int8, s, args.repeat):.2f}"
                  for s in (2.0, 3.0, 10.0)]
        print(f"campplus-int8 / campplus time, interleaved: {', '.join(ratios)}")

    if not (SPEECH / "test_list.csv").exists():
        print(f"no {SPEECH}: batch throughput skipped", file=sys.stderr)
        return 0
    utts, _ = read_utterances(SPEECH / "test_list.csv")
    files = [u.path for u in utts[: args.files]]
    audio_s = sum(len(load_audio(f)) for f in files) / SAMPLE_RATE
    print(f"\nbatch-offline throughput: {len(files)} utterances, {audio_s / 60:.1f} min of "
          "speech, no cache, 1 ONNX thread per worker")
    print(f"{'model':10s} {'1 worker':>10s} {'2 workers':>10s} {'ratio':>6s}")
    for model in args.models:
        one = throughput(model, files, 1)
        two = throughput(model, files, 2)
        print(f"{model:10s} {one:7.1f}/s {two:8.1f}/s {two / one:6.2f}")
    own, children = peak_rss_mb()
    print(f"\npeak RSS: main process {own:.0f} MB, largest worker {children:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
