"""Batch jobs stop cleanly: SIGTERM, SIGINT or SIGKILL to batch-offline or verify
leaves no worker process behind (each holds a model), and the first two exit at once.

Real processes and real signals, on the shared speech lists (long enough that
the run is still embedding when the signal comes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_batch(tmp: Path, speech: Path, command: str = "batch-offline"
                ) -> tuple[subprocess.Popen[str], list[int]]:
    """batch-offline (or verify) with 2 workers, once both workers are embedding."""
    lists = (["--trials", str(speech / "trials.txt")] if command == "verify" else
             ["--enroll-list", str(speech / "enroll_list.csv"),
              "--test-list", str(speech / "test_list.csv"), "--out", str(tmp / "r.csv")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "vggvox_client.cli", command, *lists, "--root", str(speech),
         "--cache", str(tmp / "cache"), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.1)
        workers = children(proc.pid)
    assert len(workers) == 2, f"no workers (exit {proc.poll()})"
    # Signal once they embed: the first result is in the cache. A fixed pause could
    # land inside a worker's model load on a busy machine (int8 takes ~3 s to load).
    while (time.monotonic() < deadline and proc.poll() is None
           and not any((tmp / "cache").rglob("*.npy"))):
        time.sleep(0.1)
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before the signal: make the lists longer"
    return proc, workers


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("command, sig, code", [("batch-offline", signal.SIGTERM, 143),
                                               ("batch-offline", signal.SIGINT, 130),
                                               ("verify", signal.SIGTERM, 143)])
def test_a_signal_stops_a_batch_job_and_its_workers_within_2_s(
        tmp_path: Path, speech_dir: Path, command: str, sig: signal.Signals, code: int) -> None:
    proc, workers = start_batch(tmp_path, speech_dir, command)
    try:
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - t0
        assert proc.returncode == code and took < 2.0, (proc.returncode, took, err[-2000:])
        print(f"{command} {sig.name}: exit {proc.returncode} after {took:.2f} s")
        assert "Traceback" not in err, err[-2000:]
        assert gone_within(workers, 2.0), "a worker outlived the run"
    finally:
        proc.kill()
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)


def test_workers_die_with_a_killed_parent(tmp_path: Path, speech_dir: Path) -> None:
    proc, workers = start_batch(tmp_path, speech_dir)
    try:
        proc.kill()  # SIGKILL: the parent cannot clean up; the kernel tells the workers
        proc.wait(timeout=10)
        assert gone_within(workers, 2.0), "a worker outlived its killed parent"
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
