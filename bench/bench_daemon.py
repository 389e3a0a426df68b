"""vggvoxd figures: decision latency, CPU and memory, replay throughput.

    .venv/bin/python bench/bench_daemon.py [--seconds 60]

Runs the real daemon (CAM++, 2 s windows, 0.5 s hop, 1 ONNX thread) on a
private PulseAudio virtual microphone and measures:

- decision latency: from the moment a window's last sample enters the ring
  buffer (the ``captured`` field, stamped in the capture callback's write) to
  the moment this subscriber receives the window's ``speaker`` event; p50 and
  p95, beside the model's own compute time for one 2 s window;
- the daemon's CPU share of one core and its RSS over ``--seconds`` of
  silence (low noise at -60 dBFS, which the VAD must reject) and of
  continuous speech;
- replay throughput without --realtime: seconds of audio per wall second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

# The daemon runner and the two-speaker material are the tests' own helpers.
from benchkit import DaemonProcess, conversation, cpu_seconds, rss_mb

from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.modelcard import DEFAULT_MODEL
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one
from vggvox_client.virtualmic import PulseServer


def window_ms(model: str, window: np.ndarray, reps: int = 30) -> list[float]:
    """The model's times (ms) for one window, front-end included, 1 thread, warm."""
    embedder = Embedder.from_card(model, threads=1)
    embedder.embed(window)
    times = []
    for _ in range(reps):
        c0 = time.perf_counter()
        embedder.embed(window)
        times.append(1000 * (time.perf_counter() - c0))
    return times


def speech_track(seconds: float, out: Path, sources: list[Path]) -> Path:
    """Continuous speech: real utterances back to back, looped to length."""
    clips = [load_audio(p) for p in sources]
    parts, total = [], 0
    while total < seconds * 16000:
        for c in clips:
            parts.append(c)
            total += len(c)
    sf.write(str(out), np.concatenate(parts)[: int(seconds * 16000)], 16000)
    return out


def measure(d: DaemonProcess, pulse: PulseServer, wav: Path | None, seconds: float,
            sub: object) -> tuple[float, float, list[dict]]:
    """CPU share and peak RSS while ``wav`` plays (or nothing), and the events seen."""
    pid = d.proc.pid  # type: ignore[union-attr]
    player = pulse.play(wav) if wav else None
    c0, t0, peak, events = cpu_seconds(pid), time.monotonic(), 0.0, []
    while time.monotonic() - t0 < seconds:
        ev = d.conn.receive(sub, 0.2)  # type: ignore[arg-type]
        if ev is not None:
            ev["received"] = time.time()
            events.append(ev)
        peak = max(peak, rss_mb(pid))
    share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    if player:
        player.kill()
    return share, peak, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vggvox-bench-") as name:
        tmp = Path(name)
        convo = conversation(tmp)
        pulse = PulseServer(tmp / "pulse")
        pulse.start()
        d = DaemonProcess(tmp, source="mic", args=["--device", "pulse", "--log-level", "WARNING"],
                          env=pulse.env).start()
        try:
            for who, files in convo.enroll.items():
                enroll(d.conn, who, files, None, False, 16 << 20)
            sub = d.conn.subscribe(["speaker"])
            time.sleep(1.0)
            noise = tmp / "noise.wav"
            rng = np.random.default_rng(0)
            sf.write(str(noise), (10 ** (-60 / 20) * rng.standard_normal(
                int(args.seconds * 16000) + 32000)).astype(np.float32), 16000)
            quiet_cpu, quiet_rss, quiet_ev = measure(d, pulse, noise, args.seconds, sub)
            track = speech_track(args.seconds + 2, tmp / "speech.wav",
                                 [p for files in convo.enroll.values() for p in files])
            talk_cpu, talk_rss, talk_ev = measure(d, pulse, track, args.seconds, sub)
            sub.close()  # type: ignore[attr-defined]

            t0 = time.monotonic()
            replay_one(d.conn, convo.stream, realtime=False, as_json=True, timeout=120,
                       echo=False)
            replay_wall = time.monotonic() - t0
            replay_audio = len(load_audio(convo.stream)) / 16000
        finally:
            d.stop()
            pulse.stop()

    compute = window_ms(DEFAULT_MODEL, load_audio(convo.stream)[16000:48000])

    lat = [1000 * (e["received"] - e["captured"]) for e in talk_ev]
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    print(f"decision latency over {len(lat)} speaker events (CAM++, 2 s windows, 0.5 s hop):")
    print(f"  p50 {statistics.median(lat):6.1f} ms   p95 {q[18]:6.1f} ms")
    print(f"  model compute for one 2 s window: median {statistics.median(compute):.1f} ms, "
          f"p95 {statistics.quantiles(compute, n=20)[18]:.1f} ms (1 thread)")
    print(f"\n{args.seconds:.0f} s of silence (noise at -60 dBFS): CPU {100 * quiet_cpu:.1f} % "
          f"of one core, peak RSS {quiet_rss:.0f} MB, speaker events {len(quiet_ev)}")
    print(f"{args.seconds:.0f} s of continuous speech: CPU {100 * talk_cpu:.1f} % of one core, "
          f"peak RSS {talk_rss:.0f} MB, speaker events {len(talk_ev)}")
    print(f"\nreplay without --realtime: {replay_audio:.1f} s of audio in {replay_wall:.2f} s = "
          f"{replay_audio / replay_wall:.1f} s of audio per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
