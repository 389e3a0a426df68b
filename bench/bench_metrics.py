"""What the Prometheus endpoint costs the daemon in continuous speech.

    .venv/bin/python bench/bench_metrics.py [--seconds 40] [--runs 2] [--scrape-every 1]

Runs the real daemon on one source of continuous speech played at real-time
pace (one speaker's LibriSpeech or VCTK utterances back to back, from
../shared/data/speech), with ``metrics.listen`` on and scraped over HTTP every
``--scrape-every`` seconds (Prometheus's default is 15 s: 1 s is harsher), and
without it, alternating runs. Prints the daemon's CPU in % of one core for each
and the difference; the issue's bound is 1 % of a core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from bench_capacity import speakers_clips, stream_file
from benchkit import SPEECH, DaemonProcess, cpu_seconds, free_port


def run(tmp: Path, wav: Path, metrics: bool, seconds: float, every: float) -> float:
    """The daemon's CPU share of one core while ``wav`` plays."""
    port = free_port()
    cfg = {"sources": [{"name": "room", "uri": f"file:{wav}"}],
           "logging": {"level": "WARNING"}}
    if metrics:
        cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    (run_dir / "c.yaml").write_text(yaml.safe_dump(cfg))
    d = DaemonProcess(run_dir, source=None, args=["--config", str(run_dir / "c.yaml")])
    d.start(timeout=60)
    pid = d.proc.pid  # type: ignore[union-attr]
    try:
        time.sleep(1.0)  # past start-up
        c0, t0 = cpu_seconds(pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            if metrics:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    r.read()
            time.sleep(every)
        share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    finally:
        d.stop()
    return 100 * share


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--scrape-every", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vggvox-metrics-") as name:
        tmp = Path(name)
        clips = speakers_clips(SPEECH, 1)[0]
        wav = stream_file(clips, args.seconds + 5, 0.0, tmp / "speech.wav")
        on: list[float] = []
        off: list[float] = []
        for i in range(args.runs):
            for metrics in (True, False) if i % 2 == 0 else (False, True):
                (on if metrics else off).append(run(tmp, wav, metrics, args.seconds,
                                                    args.scrape_every))
    a, b = statistics.median(on), statistics.median(off)
    print(f"daemon CPU in continuous speech, {args.seconds:.0f} s x {args.runs} runs each, "
          f"alternating: metrics on, scraped every {args.scrape_every:g} s: {a:.1f} % of a "
          f"core (runs {', '.join(f'{v:.1f}' for v in on)}); off: {b:.1f} % (runs "
          f"{', '.join(f'{v:.1f}' for v in off)}); difference {a - b:+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
