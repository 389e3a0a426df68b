"""The sherpa-onnx side of bench/bench_peer.py, in two halves.

Set-up, imported by bench_peer.py in the product venv: ``sherpa_python`` (the
sherpa venv, made once), ``sherpa_model`` (our ONNX with sherpa's metadata) and
``Sherpa`` (a ``serve`` process to send requests to).

Measurement, run with the sherpa venv's python (sherpa-onnx, numpy, soundfile;
no vggvox), so that the two runtimes, each with its own onnxruntime, never share
a process. bench_peer.py starts it; by hand only to debug:

    ~/.cache/vggvox-bench/sherpa-venv/bin/python bench/peer_sherpa.py serve \\
        --model MODEL.onnx --windows WINDOWS.npz
    ~/.cache/vggvox-bench/sherpa-venv/bin/python bench/peer_sherpa.py throughput \\
        --model MODEL.onnx --files FILES.txt --workers 2

serve: reads JSON requests, one a line, on stdin and answers each with one JSON
line on stdout, so that the caller can alternate sherpa and its own timings:
  {"op": "time", "i": K, "reps": R}  -> {"ms": [R times], "emb": [...]}
      embeds window K of the .npz R times; each time covers create_stream,
      accept_waveform (the fbank), input_finished and compute (the network),
      the whole of what a user of SpeakerEmbeddingExtractor calls per clip.
  {"op": "feats", "i": K, "out": PATH} -> {"frames": N}
      saves sherpa's raw fbank of window K (frames, 80) to PATH (.npy), untimed.
  {"op": "quit"}
throughput: embeds every file named in FILES.txt (one path a line) over
--workers processes, each with its own extractor of 1 thread (as sherpa's
examples loop over files), and prints one JSON object: files, failed, seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

try:  # only in the sherpa venv: bench_peer.py imports the set-up half of this file
    import sherpa_onnx
    import soundfile as sf
except ImportError:
    pass

if TYPE_CHECKING:
    from vggvox.modelcard import ModelCard

log = logging.getLogger("bench_peer")
SHERPA_VERSION = "2.0.1"
SAMPLE_RATE = 16000
FRAME_SHIFT = 160
"""Samples per 10 ms frame at 16 kHz."""

_extractor: sherpa_onnx.SpeakerEmbeddingExtractor | None = None


def sherpa_python(cache: Path) -> Path:
    """The sherpa venv's python; the venv is made and filled only when it lacks sherpa."""
    venv = cache / "sherpa-venv"
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import sherpa_onnx; print(sherpa_onnx.__version__)"]
    if py.exists():
        found = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
        if found == SHERPA_VERSION:
            return py
    log.info("installing sherpa-onnx %s into %s", SHERPA_VERSION, venv)
    base = getattr(sys, "_base_executable", sys.executable)  # not our venv's python
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"sherpa-onnx=={SHERPA_VERSION}",
                    "numpy", "soundfile"], check=True)
    subprocess.run(probe, check=True, capture_output=True)
    return py


def sherpa_metadata(card: ModelCard) -> dict[str, str]:
    """What sherpa's speaker-embedding model reads (speaker-embedding-extractor-model.cc:
    framework, output_dim, sample_rate, normalize_samples, language required;
    feature_normalize_type optional), plus url and comment, as its 3D-Speaker
    export script (scripts/3dspeaker/export-onnx.py) writes them."""
    ckpt = "speech_campplus_sv_zh_en_16k-common_advanced"
    return {
        "framework": "3d-speaker",
        "language": "Chinese-English",
        "url": f"https://www.modelscope.cn/models/iic/{ckpt}/summary",
        "comment": f"vggvox {card.name} {card.version} ({card.path.name}, sha256 "
                   f"{card.sha256[:12]}); metadata added by bench/bench_peer.py",
        "sample_rate": str(card.sample_rate),
        "output_dim": str(card.embedding_size),
        # 1: samples in [-1, 1], as our front-end takes them (0 would scale by 32768).
        "normalize_samples": "1",
        # Subtract the per-utterance mean of each bin: the card's mean_norm.
        "feature_normalize_type": "global-mean" if card.frontend.mean_norm else "",
    }


def sherpa_model(card: ModelCard, cache: Path) -> Path:
    """A copy of the card's ONNX with sherpa's metadata, keyed by the model's sha256."""
    out = cache / f"{card.path.stem}-{card.sha256[:12]}-sherpa.onnx"
    if not out.exists():
        import onnx  # in the product venv, which builds the file

        model = onnx.load(str(card.path))
        del model.metadata_props[:]
        for key, value in sherpa_metadata(card).items():
            model.metadata_props.add(key=key, value=value)
        tmp = out.with_suffix(".tmp")
        onnx.save(model, str(tmp))
        tmp.replace(out)  # never a half-written model for the next run
    return out


class Sherpa:
    """peer_sherpa.py serve, over stdin/stdout: one JSON line each way per request."""

    def __init__(self, py: Path, model: Path, windows: Path) -> None:
        cmd = [str(py), str(Path(__file__).resolve()), "serve", "--model", str(model),
               "--windows", str(windows), "--threads", "1"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"peer_sherpa.py exited with {self.proc.wait()}")
        return json.loads(line)

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write('{"op": "quit"}\n')
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def make_extractor(model: str, threads: int) -> sherpa_onnx.SpeakerEmbeddingExtractor:
    config = sherpa_onnx.SpeakerEmbeddingExtractorConfig(
        model=model, num_threads=threads, debug=False, provider="cpu"
    )
    if not config.validate():
        raise SystemExit(f"peer_sherpa: sherpa-onnx rejects the config for {model}")
    return sherpa_onnx.SpeakerEmbeddingExtractor(config)


def embed(
    ex: sherpa_onnx.SpeakerEmbeddingExtractor, x: np.ndarray, rate: int = SAMPLE_RATE
) -> tuple[list[float], sherpa_onnx.OnlineStream]:
    stream = ex.create_stream()
    # A numpy array, as sherpa's own examples pass it (a list is no faster).
    stream.accept_waveform(rate, x)
    stream.input_finished()
    return ex.compute(stream), stream


def serve(model: str, windows: Path, threads: int) -> None:
    ex = make_extractor(model, threads)
    data = np.load(windows)
    wins = [np.ascontiguousarray(data[f"w{i}"], dtype=np.float32) for i in range(len(data.files))]
    out = sys.stdout
    out.write(json.dumps({"ready": True, "version": sherpa_onnx.__version__,
                          "windows": len(wins), "dim": ex.dim}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        if op == "quit":
            break
        x = wins[int(req["i"])]
        if op == "time":
            times = []
            emb: list[float] = []
            for _ in range(int(req["reps"])):
                t0 = time.perf_counter()
                emb, _ = embed(ex, x)
                times.append((time.perf_counter() - t0) * 1000)
            reply: dict[str, object] = {"ms": times, "emb": list(emb)}
        elif op == "feats":
            _, stream = embed(ex, x)
            # snip_edges=False: round(samples / shift) frames. Asking get_frames for
            # more than are ready makes sherpa exit, so the count must be exact.
            n = (len(x) + FRAME_SHIFT // 2) // FRAME_SHIFT
            frames = np.asarray(stream.get_frames(0, n), dtype=np.float32).reshape(n, -1)
            np.save(req["out"], frames)
            reply = {"frames": n}
        else:
            reply = {"error": f"unknown op {op!r}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _init_worker(model: str, threads: int) -> None:
    global _extractor
    _extractor = make_extractor(model, threads)


def _embed_file(path: str) -> bool:
    """One file as sherpa's speaker-identification example reads it: soundfile, mono,
    and sherpa's own resampling for a file that is not 16 kHz."""
    assert _extractor is not None
    try:
        x, rate = sf.read(path, dtype="float32", always_2d=True)
        emb, _ = embed(_extractor, np.ascontiguousarray(x.mean(axis=1)), rate)
        return len(emb) > 0
    except (OSError, RuntimeError, sf.LibsndfileError):
        return False


def throughput(model: str, files: Path, workers: int, threads: int) -> None:
    paths = [p for p in files.read_text().splitlines() if p.strip()]
    # The clock starts before the pool, as the product's batch-offline pays for its
    # workers' model loading too; the caller also times this whole process.
    t0 = time.perf_counter()
    if workers <= 1:
        _init_worker(model, threads)
        ok = [_embed_file(p) for p in paths]
    else:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, _init_worker, (model, threads)) as pool:
            ok = list(pool.imap(_embed_file, paths, chunksize=4))
    seconds = time.perf_counter() - t0
    print(json.dumps({"files": len(paths), "failed": ok.count(False), "seconds": seconds,
                      "version": sherpa_onnx.__version__}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--windows", type=Path, required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--files", type=Path, required=True)
    t.add_argument("--workers", type=int, default=2)
    for p in (s, t):
        p.add_argument("--model", required=True)
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args.model, args.windows, args.threads)
    else:
        throughput(args.model, args.files, args.workers, args.threads)


if __name__ == "__main__":
    main()
