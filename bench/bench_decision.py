"""Cost per decision on a stream: the product's pipeline against sherpa-onnx, same CAM++.

    .venv/bin/python bench/bench_decision.py [--clips 6] [--seconds 12] [--reps 3]
        [--model campplus-int8] [--peer-model campplus] [--batch 1,4]

A decision is one 2 s window every 0.5 s of continuous speech. Both sides get
the same windows, cut from real speech clips (bench_peer.pick_windows's clips):

- sherpa-onnx 2.0.1's SpeakerEmbeddingExtractor, as its examples use it: one
  stream per window, its fbank and its network (``peer_sherpa.py serve``);
- the product as the daemon runs it: the stream's fbank frames computed once as
  the audio arrives (``FeatureTrack``, fed 20 ms blocks) and the due windows
  embedded from them, ``--batch`` at a time: 1 is a single stream; 4 is what
  the executor gets when several streams' windows are due together.

Per decision = (fbank of the whole clip + every network call) / windows. Runs
alternate between the sides, as in bench_peer. Prints ms per decision and the
ratio product/sherpa. ``--peer-model`` is the model on sherpa's side (default:
fp32 campplus, the peer's own CAM++), ``--model`` the product's.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_peer import CACHE, DATA, pick_windows
from peer_sherpa import Sherpa, sherpa_model, sherpa_python

from vggvox.audio import to_int16
from vggvox.embedder import Embedder
from vggvox.modelcard import load_card, resolve_card
from vggvox.stream.features import FeatureTrack
from vggvox.stream.recognizer import embed_windows
from vggvox.stream.segmenter import Window

log = logging.getLogger("bench_decision")
WINDOW, HOP, BLOCK = 32000, 8000, 320


def stream_windows(x: np.ndarray) -> list[tuple[int, int]]:
    return [(e - WINDOW, e) for e in range(WINDOW, len(x) + 1, HOP)]


def product_run(emb: Embedder, pcm: np.ndarray, batch: int) -> tuple[float, int]:
    """Seconds for the whole clip as a stream (fbank as it arrives, windows batched)."""
    spans = stream_windows(pcm)
    t0 = time.perf_counter()
    track = FeatureTrack.for_card(emb.card)
    assert track is not None
    for i in range(0, len(pcm), BLOCK):
        track.push(pcm[i:i + BLOCK])
    windows = [Window(s, e, pcm[s:e], track.frames(s, e)) for s, e in spans]
    for i in range(0, len(windows), batch):
        embed_windows(emb, windows[i:i + batch])
    return time.perf_counter() - t0, len(windows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0, help="stream cut from each clip")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default="campplus-int8")
    ap.add_argument("--peer-model", default="campplus")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    batches = [int(b) for b in args.batch.split(",")]
    # pick_windows cuts 2, 3 and 10 s from the middle of each clip: the 10 s one is ours.
    clips = [x for sec, _, x in pick_windows(args.data, args.clips, 0) if sec == 10.0]
    clips = [x[: int(args.seconds * 16000)] for x in clips]
    pcms = [to_int16(x) for x in clips]
    spans = [stream_windows(p) for p in pcms]
    emb = Embedder(load_card(resolve_card(args.model)), threads=1)
    py = sherpa_python(args.cache)
    peer = sherpa_model(load_card(resolve_card(args.peer_model)), args.cache)
    ours: dict[int, list[float]] = {b: [] for b in batches}
    theirs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "windows.npz"
        flat = [(p[s:e].astype(np.float32) / 32768) for p, sp in zip(pcms, spans, strict=True)
                for s, e in sp]
        np.savez(npz, **{f"w{i}": w for i, w in enumerate(flat)})
        sherpa = Sherpa(py, peer, npz)
        version = sherpa.info["version"]
        for b in batches:
            product_run(emb, pcms[0], b)  # untimed: first shapes allocate
        sherpa.ask(op="time", i=0, reps=1)
        for rep in range(args.reps):
            for c, pcm in enumerate(pcms):
                first = sum(len(s) for s in spans[:c])
                for side in ("product", "sherpa") if (rep + c) % 2 == 0 else ("sherpa", "product"):
                    if side == "sherpa":
                        ms = [sherpa.ask(op="time", i=first + k, reps=1)["ms"][0]
                              for k in range(len(spans[c]))]
                        theirs.append(sum(ms) / len(ms))
                    else:
                        for b in batches:
                            sec, n = product_run(emb, pcm, b)
                            ours[b].append(1000 * sec / n)
        sherpa.close()
    s = statistics.median(theirs)
    print(f"cost per decision (2 s window, 0.5 s hop, 1 ONNX thread), {len(pcms)} clips x "
          f"{args.seconds:g} s of speech, median of {args.reps} alternating runs each:")
    print(f"  sherpa-onnx {version}, {args.peer_model}: {s:.1f} ms per decision")
    for b in batches:
        p = statistics.median(ours[b])
        print(f"  product, {args.model}, batches of {b}: {p:.1f} ms per decision, "
              f"ratio product/sherpa {p / s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
