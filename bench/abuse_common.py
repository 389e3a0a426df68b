"""What the abuse measurements share: the daemon runner, real speech, /proc figures,
timed requests and text for the table (``bench_abuse.py`` runs them)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import FIXTURES, DaemonProcess

from vggvox.audio import load_audio
from vggvox.protocol.pcm import to_pcm
from vggvox_client.connection import ClientError, Connection

MAX_BYTES = 16 * 1024 * 1024
Row = tuple[str, str, str, str]
"""(item, attack or fault, figure before, figure now)"""


# ------------------------------------------------------------------------------ helpers


def speech_clips(speaker: str = "ls-3005") -> list[Path]:
    """Real enrollment clips of one speaker from the shared fixtures ([] when absent)."""
    return sorted(FIXTURES.glob(f"{speaker}__*.wav")) if FIXTURES.is_dir() else []


NO_SPEECH = f"skipped: no speech clips in {FIXTURES} (a fresh clone has no ../shared)"


def long_pcm(seconds: float = 110.0) -> bytes:
    """One clip of ``seconds`` of real speech (a fixture clip repeated), as request PCM."""
    voice = load_audio(speech_clips()[0])
    return to_pcm(np.tile(voice, int(seconds * 16000 / len(voice))))


def proc_status(pid: int, key: str) -> float:
    """A /proc/PID/status figure in MB (VmRSS, VmHWM); nan when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def threads(pid: int) -> int:
    """The process's threads now (/proc/PID/status); -1 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def hold_tcp(host: str, port: int, count: int) -> list[socket.socket]:
    """Up to ``count`` raw TCP connections to ``host:port``, held open (no handshake);
    the first that fails ends the flood (the server sheds, or is out of files)."""
    held: list[socket.socket] = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, port))
            held.append(s)
        except OSError:
            s.close()
            break
    return held


def timed(conn: Connection, op: str, timeout: float = 10.0, **fields: Any
          ) -> tuple[dict[str, Any] | None, float, str]:
    """(reply or None, seconds, error text) of one request."""
    t0 = time.perf_counter()
    try:
        reply = conn.request(op, timeout=timeout, **fields)
        return reply, time.perf_counter() - t0, ""
    except ClientError as e:
        return None, time.perf_counter() - t0, str(e)


def short(text: str, n: int = 90) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f} ms"


@contextmanager
def running(tmp: Path, **kw: Any) -> Iterator[DaemonProcess]:
    tmp.mkdir(parents=True, exist_ok=True)
    d = DaemonProcess(tmp, **kw).start(timeout=60)
    try:
        yield d
    finally:
        d.stop()


def exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}"


Measurement = Callable[[Path, bool], list[Row]]


def measure(measurements: Mapping[str, Measurement], chosen: list[str], quick: bool,
            prefix: str = "vggvox-abuse-") -> list[Row]:
    """Run the chosen measurements, each in a folder of its own (their time on stderr);
    one that fails is a row saying so, not the end of the others."""
    names = list(measurements)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        for key in chosen:
            t0 = time.monotonic()
            print(f"[{key}] ...", file=sys.stderr, flush=True)
            try:
                rows += measurements[key](Path(name) / key, quick)
            except Exception as e:  # one failed measurement must not hide the others
                rows.append((str(names.index(key) + 1), key, "",
                             f"FAILED: {type(e).__name__}: {short(str(e), 200)}"))
            print(f"[{key}] {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    print("| item | attack or fault | figure before | figure now |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |")


def main_alone(measurements: Mapping[str, Measurement], doc: str, quick_help: str) -> int:
    """A measurement module run by itself: ``--quick``, ``--only NAME``, then the table."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--only", choices=list(measurements), help="one measurement")
    args = parser.parse_args()
    print_table(measure(measurements, [args.only] if args.only else list(measurements),
                        args.quick))
    return 0
