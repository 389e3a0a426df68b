"""The product against its peer, sherpa-onnx's SpeakerEmbeddingExtractor, on the same CAM++.

    .venv/bin/python bench/bench_peer.py [--clips 12] [--reps 5] [--json]
    .venv/bin/python bench/bench_peer.py --throughput [--workers 2] [--runs 2] [--json]
    .venv/bin/python bench/bench_peer.py --model campplus-int8 --peer-model campplus ...

Installs sherpa-onnx 2.0.1 into its own venv (~/.cache/vggvox-bench/sherpa-venv, made
once) and builds sherpa's model file there: a copy of weights/vggvox_weights/campplus.onnx with the
metadata sherpa reads from the graph (weights/ is never touched). Both sides run
one ONNX thread. Needs ../shared/data/speech.

Per clip (windows of 2, 3 and 10 s cut from the middle of real speech clips), it
prints the median ms per embedding of each side, front-end included, the ratio
product/sherpa (below 1: the product is faster), and the cosine between the two
embeddings (mean, worst). The timings are interleaved, one repetition of each in
turn, so that load from other processes on the machine falls on both alike.
sherpa's fbank differs from the card's (snip_edges=False, high_freq=-400, see
SHERPA_FBANK): the bench shows it, and does not tune either side to it.

--throughput: files per second of `vggvox-client batch-offline` (no cache: an
empty --cache folder each run) against a loop of SpeakerEmbeddingExtractor over
the same files with the same number of worker processes, both timed whole (start,
model loading and all), runs alternating, and the ratio product/sherpa.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kaldi_native_fbank as knf
import numpy as np

# The sherpa side, a sibling of this file: its venv, model file and process.
from benchkit import SPEECH
from peer_sherpa import Sherpa, sherpa_model, sherpa_python

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.eval.lists import read_utterances
from vggvox.modelcard import ModelCard, load_card, resolve_card

log = logging.getLogger("bench_peer")
HERE = Path(__file__).resolve().parent
DATA = SPEECH  # --data
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vggvox-bench"
LENGTHS_S = (2.0, 3.0, 10.0)
# sherpa-onnx's FeatureExtractorConfig defaults where they differ from the card's
# front-end (kaldi-native-fbank's defaults: snip_edges=True, high_freq=0 = Nyquist).
# fbank_check() verifies them against sherpa's own frames on every run.
SHERPA_FBANK = {"snip_edges": False, "high_freq": -400.0}


def pick_windows(data: Path, clips: int, seed: int) -> list[tuple[float, str, np.ndarray]]:
    """(length, clip, samples): each length cut from the middle of the same clips,
    the longest clips of distinct speakers, picked at random with a fixed seed."""
    with (data / "manifest.csv").open(newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: row["path"])
    need = max(LENGTHS_S) + 0.2
    by_speaker: dict[str, str] = {}
    for row in rows:
        if float(row["duration_s"]) >= need:
            by_speaker.setdefault(row["speaker"], row["path"])
    rng = np.random.default_rng(seed)
    chosen = sorted(by_speaker.values())
    chosen = [chosen[i] for i in sorted(rng.permutation(len(chosen))[:clips])]
    out = []
    for path in chosen:
        x = load_audio(data / path)
        for sec in LENGTHS_S:
            n = int(sec * SAMPLE_RATE)
            start = (len(x) - n) // 2
            out.append((sec, path, x[start:start + n]))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def sherpa_fbank(x: np.ndarray, card: ModelCard) -> np.ndarray:
    """The card's fbank with SHERPA_FBANK's settings in place of its own."""
    fe = card.frontend
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.frame_length_ms = fe.frame_length_ms
    opts.frame_opts.frame_shift_ms = fe.frame_shift_ms
    opts.frame_opts.window_type = fe.window
    opts.frame_opts.preemph_coeff = fe.preemphasis
    opts.frame_opts.dither = fe.dither
    opts.frame_opts.snip_edges = SHERPA_FBANK["snip_edges"]
    opts.mel_opts.num_bins = fe.num_mel_bins
    opts.mel_opts.high_freq = SHERPA_FBANK["high_freq"]
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(SAMPLE_RATE, x)
    fb.input_finished()
    return np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])


def run_clips(args: argparse.Namespace, card: ModelCard, py: Path, model: Path) -> dict:
    emb = Embedder(card, threads=1)
    windows = pick_windows(args.data, args.clips, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "windows.npz"
        np.savez(npz, **{f"w{i}": w for i, (_, _, w) in enumerate(windows)})
        sherpa = Sherpa(py, model, npz)
        rows: dict[float, dict[str, list[float]]] = {
            s: {"product": [], "sherpa": [], "cos": [], "cos_net": [], "fbank_diff": [],
                "frames_product": [], "frames_sherpa": []} for s in LENGTHS_S}
        for i, (sec, _, x) in enumerate(windows):
            r = rows[sec]
            # Untimed first: the first run of a shape allocates on both sides.
            ours = emb.embed(x)
            theirs = np.asarray(sherpa.ask(op="time", i=i, reps=1)["emb"], dtype=np.float32)
            r["cos"].append(cosine(ours, theirs))
            # Where the difference comes from: sherpa's own frames, (a) against the
            # card's fbank with SHERPA_FBANK's settings, (b) through our network.
            feats_path = Path(tmp) / "feats.npy"
            sherpa.ask(op="feats", i=i, out=str(feats_path))
            feats = np.load(feats_path)
            r["fbank_diff"].append(float(np.abs(sherpa_fbank(x, card) - feats).max()))
            net = emb.session.run([emb.output_name],
                                  {card.input_name: (feats - feats.mean(axis=0))[None]})[0][0]
            r["cos_net"].append(cosine(net, theirs))
            r["frames_sherpa"].append(len(feats))
            r["frames_product"].append(1 + (len(x) - 400) // 160)
            for rep in range(args.reps):
                # Alternate who goes first, so that neither always follows the other.
                for side in (("product", "sherpa") if (i + rep) % 2 == 0
                             else ("sherpa", "product")):
                    if side == "product":
                        t0 = time.perf_counter()
                        emb.embed(x)
                        r["product"].append((time.perf_counter() - t0) * 1000)
                    else:
                        r["sherpa"].extend(sherpa.ask(op="time", i=i, reps=1)["ms"])
        version = sherpa.info["version"]
        sherpa.close()
    out = {}
    for sec, r in rows.items():
        p, s = statistics.median(r["product"]), statistics.median(r["sherpa"])
        out[f"{sec:g}s"] = {
            "windows": len(r["cos"]), "product_ms": p, "sherpa_ms": s, "ratio": p / s,
            "cos_mean": statistics.fmean(r["cos"]), "cos_worst": min(r["cos"]),
            "cos_net_worst": min(r["cos_net"]), "fbank_max_diff": max(r["fbank_diff"]),
            "frames_product": r["frames_product"][0], "frames_sherpa": r["frames_sherpa"][0]}
    return {"sherpa_version": version, "reps": args.reps, "clips": len(windows) // 3,
            "windows": out}


def children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_throughput(args: argparse.Namespace, py: Path, model: Path) -> dict:
    lists = [read_utterances(p)[0] for p in (args.enroll_list, args.test_list)]
    files = list(dict.fromkeys(str(u.path) for utts in lists for u in utts))
    client = Path(sys.executable).parent / "vggvox-client"
    walls: dict[str, list[float]] = {"product": [], "sherpa": []}
    cpus: dict[str, list[float]] = {"product": [], "sherpa": []}
    sherpa_inner: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "files.txt"
        listing.write_text("\n".join(files) + "\n")
        for run in range(args.runs):
            for side in ("product", "sherpa") if run % 2 == 0 else ("sherpa", "product"):
                if side == "product":
                    cmd = [str(client), "batch-offline", "--enroll-list", str(args.enroll_list),
                           "--test-list", str(args.test_list), "--out", f"{tmp}/r{run}.csv",
                           "--workers", str(args.workers), "--cache", f"{tmp}/cache{run}",
                           # The card sherpa's file was built from, not the client's default.
                           "--model", str(resolve_card(args.model))]
                else:
                    cmd = [str(py), str(HERE / "peer_sherpa.py"), "throughput", "--model",
                           str(model), "--files", str(listing), "--workers", str(args.workers)]
                t0, cpu0 = time.perf_counter(), children_cpu()
                done = subprocess.run(cmd, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                # CPU seconds (the process and its reaped workers) vary less than wall
                # time when another process competes for the cores.
                cpus[side].append(children_cpu() - cpu0)
                if done.returncode != 0:
                    raise SystemExit(f"{side} failed ({done.returncode}): {done.stderr[-2000:]}")
                walls[side].append(wall)
                if side == "sherpa":
                    res = json.loads(done.stdout)
                    sherpa_inner.append(res["seconds"])
                    if res["failed"]:
                        log.warning("sherpa could not embed %d files", res["failed"])
                log.info("run %d %s: %.1f s", run, side, wall)
    p, s = (len(files) / statistics.median(walls[k]) for k in ("product", "sherpa"))
    return {"files": len(files), "workers": args.workers, "runs": args.runs,
            "product_files_per_s": p, "sherpa_files_per_s": s, "ratio": p / s,
            "product_wall_s": walls["product"], "sherpa_wall_s": walls["sherpa"],
            "product_cpu_s": cpus["product"], "sherpa_cpu_s": cpus["sherpa"],
            "cpu_ratio": statistics.median(cpus["sherpa"]) / statistics.median(cpus["product"]),
            "sherpa_inner_s": sherpa_inner}


def print_report(res: dict) -> None:
    print(f"model: product {res['model']}, sherpa {res['peer_model']}")
    if "windows" in res:
        print(f"ms per embedding, median of {res['reps']} interleaved reps x {res['clips']} "
              f"clips, 1 ONNX thread (sherpa-onnx {res['sherpa_version']}):")
        print(f"{'window':>6} {'product':>8} {'sherpa':>8} {'ratio':>6} {'cos mean':>9} "
              f"{'cos worst':>9} {'frames p/s':>11}")
        for name, w in res["windows"].items():
            print(f"{name:>6} {w['product_ms']:8.1f} {w['sherpa_ms']:8.1f} {w['ratio']:6.2f} "
                  f"{w['cos_mean']:9.4f} {w['cos_worst']:9.4f} "
                  f"{w['frames_product']:>5}/{w['frames_sherpa']:<5}")
        worst_net = min(w["cos_net_worst"] for w in res["windows"].values())
        diff = max(w["fbank_max_diff"] for w in res["windows"].values())
        print("ratio = product/sherpa (below 1: product faster). The fbank differs: sherpa "
              f"uses {SHERPA_FBANK} (card: snip_edges=True, high_freq=0); sherpa's frames "
              f"vs the card's fbank with those two settings: max |diff| {diff:.2g}; our "
              f"network on sherpa's frames vs sherpa: worst cosine {worst_net:.6f}.")
    if "throughput" in res:
        t = res["throughput"]
        print(f"throughput, {t['files']} files, {t['workers']} workers, median of "
              f"{t['runs']} alternating runs (wall, start-up included):")
        print(f"  product batch-offline {t['product_files_per_s']:.2f} files/s, sherpa loop "
              f"{t['sherpa_files_per_s']:.2f} files/s, ratio product/sherpa {t['ratio']:.2f}")
        p_cpu, s_cpu = (statistics.median(t[k]) for k in ("product_cpu_s", "sherpa_cpu_s"))
        print(f"  CPU seconds (all processes): product {p_cpu:.1f}, sherpa {s_cpu:.1f}; "
              f"files per CPU second, product/sherpa {t['cpu_ratio']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description="product vs sherpa-onnx, same CAM++ model")
    ap.add_argument("--data", type=Path, default=DATA, help="shared/data/speech")
    ap.add_argument("--model", default="campplus",
                    help="card name or path, for both sides (default campplus, fp32)")
    ap.add_argument("--peer-model", help="sherpa's model, if not --model's (e.g. the "
                                         "product in int8 against the peer in fp32)")
    ap.add_argument("--clips", type=int, default=12, help="speech clips to cut windows from")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throughput", action="store_true",
                    help="time batch-offline against a sherpa loop instead of windows")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="throughput runs of each side")
    ap.add_argument("--enroll-list", type=Path, help="default: DATA/enroll_list.csv")
    ap.add_argument("--test-list", type=Path, help="default: DATA/test_list.csv")
    ap.add_argument("--cache", type=Path, default=CACHE, help=f"default {CACHE}")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if not (args.data / "manifest.csv").exists():
        raise SystemExit(f"bench_peer: no speech data at {args.data} (needs manifest.csv)")
    args.enroll_list = args.enroll_list or args.data / "enroll_list.csv"
    args.test_list = args.test_list or args.data / "test_list.csv"
    args.cache.mkdir(parents=True, exist_ok=True)
    card = load_card(resolve_card(args.model))
    py = sherpa_python(args.cache)
    peer_card = load_card(resolve_card(args.peer_model)) if args.peer_model else card
    model = sherpa_model(peer_card, args.cache)
    log.info("sherpa model %s", model)
    res: dict[str, Any] = {"model": card.tag, "peer_model": peer_card.tag}
    if args.throughput:
        res["throughput"] = run_throughput(args, py, model)
    else:
        res.update(run_clips(args, card, py, model))
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print_report(res)


if __name__ == "__main__":
    main()
