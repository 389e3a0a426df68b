"""File and stdin sources end, pause and keep up (issue 20): real daemon processes,
real pipes to their standard input, real speech.

- ``--source file:PATH`` exits 0 within 2 s of the file's end;
- ``--source stdin`` is lossless: fed as fast as the pipe takes it, it gives the
  events a replay of the same audio gives (which equal real-time pace's), and
  its writer is held back instead of windows being dropped; EOF ends the daemon;
- a stdin pipe that pauses 5 s is read again after the pause, and the speech
  after it is named;
- ``stdin:live`` fed faster than real time drops windows, and says so in the log,
  with counts that add up to what it dropped.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import Conversation

from conftest import write_wav
from vggvox.audio import load_audio, to_int16
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

MAX_BYTES = 16 * 1024 * 1024
SMALL = {"audio": {"buffer_s": 5.0}, "window": {"queue": 2, "max_batch": 2},
         "status": {"interval_s": 0.5}}
"""Buffers far smaller than the audio: a 5 s ring buffer, room for 2 windows a queue."""


def daemon(tmp: Path, source: str, settings: dict[str, Any] | None = None) -> DaemonProcess:
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump(settings or {"status": {"interval_s": 0.5}}))
    return DaemonProcess(tmp, source=source, args=["--config", str(cfg)])


def enroll_both(d: DaemonProcess, convo: Conversation) -> None:
    for name, files in convo.enroll.items():
        enroll(d.conn, name, files, None, False, MAX_BYTES)


def pcm(x: np.ndarray) -> bytes:
    return to_int16(x).tobytes()


def events_until(d: DaemonProcess, sub: Any, source: str, state: str,
                 timeout: float) -> list[dict]:
    """Events of ``source`` until its status says ``state`` (that one included)."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = d.conn.receive(sub, 0.2)
        if ev is None or ev["source"] != source:
            continue
        out.append(ev)
        if ev["type"] == "status" and ev["state"] == state:
            return out
    raise AssertionError(f"no {state!r} from {source} within {timeout} s: {d.output()}")


def comparable(events: list[dict]) -> list[tuple]:
    """What must not depend on the pace or the source: not wall times, seq, source."""
    skip = {"time", "seq", "captured", "source"}
    return [tuple(sorted((k, str(v)) for k, v in e.items() if k not in skip))
            for e in events if e["type"] in ("speaker", "turn")]


def test_a_file_source_exits_0_within_2_s_of_its_end(tmp_path: Path,
                                                     convo: Conversation) -> None:
    clip = write_wav(tmp_path / "four.wav", load_audio(convo.stream)[: 4 * 16000])
    d = daemon(tmp_path, f"file:{clip}")
    sub = d.conn.subscribe(["status", "speaker"])
    d.start()
    try:
        events = events_until(d, sub, f"file:{clip}", "finished", 30)
        code, exited = d.wait_exit(10)
    finally:
        d.stop()
    # A heartbeat while it plays: its wall time less its stream time is when playing began.
    began = min(e["time"] - e["t_end"] for e in events
                if e["type"] == "status" and e["state"] == "running")
    after_end = exited - (began + 4.0)
    print(f"exit {code} {after_end:.2f} s after the file's end")
    assert code == 0 and after_end < 2.0, d.output()
    assert any(e["type"] == "speaker" for e in events)
    assert "the source has ended: stopping" in d.output()


def test_stdin_fed_fast_is_lossless_and_gives_a_replays_events(
        tmp_path: Path, convo: Conversation) -> None:
    """The whole conversation written at once into a daemon with a 5 s ring buffer and
    room for 2 windows: the pipe holds the writer back, nothing is dropped, the events
    are a replay's (and a replay's are those of real-time pace: test_daemon.py), and
    EOF ends the daemon with status 0."""
    d = daemon(tmp_path, "stdin", SMALL).start()
    try:
        enroll_both(d, convo)
        replayed = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                              timeout=60, echo=False)
        sub = d.conn.subscribe()
        time.sleep(0.3)
        t0 = time.monotonic()
        writer = d.feed(pcm(load_audio(convo.stream)))
        events = events_until(d, sub, "stdin", "finished", 60)
        took = time.monotonic() - t0
        code, _ = d.wait_exit(10)
        writer.join(timeout=5)
        assert not writer.is_alive(), "the writer is still held back after EOF was read"
    finally:
        d.stop()
    seconds = len(load_audio(convo.stream)) / 16000
    print(f"{seconds:.1f} s of stdin decided in {took:.1f} s")
    assert code == 0, d.output()
    assert comparable(events) == comparable(replayed)
    finished = events[-1]
    assert finished["dropped_windows"] == 0 and finished["dropped_samples"] == 0
    assert "dropped" not in d.output()


def test_a_stdin_pipe_that_pauses_5_s_is_read_after_the_pause(
        tmp_path: Path, convo: Conversation) -> None:
    """It used to log `input stdin lost (no audio); will retry` after 3 s without data
    and never read stdin again, while its writer blocked for good."""
    x = load_audio(convo.stream)
    first, second = convo.turns[0], next(t for t in convo.turns if t[2] != convo.turns[0][2])
    before = x[int(first[0] * 16000): int(first[1] * 16000) + 8000]
    after = x[int(second[0] * 16000): int(second[1] * 16000) + 8000]
    d = daemon(tmp_path, "stdin").start()
    try:
        enroll_both(d, convo)
        sub = d.conn.subscribe(["turn"])
        time.sleep(0.3)
        written(d, pcm(before))
        # 5 s with the pipe open and silent (its turns are decided meanwhile).
        heard = [e for e in events_for(d, sub, 5.0) if e["final"]]
        assert d.conn.request("status")["sources"]["stdin"]["state"] == "running"
        written(d, pcm(after))
        later = [e for e in events_for(d, sub, 10.0, until_final=True) if e["final"]]
    finally:
        code, _ = d.stop()
    assert code == 0
    assert heard and {e["speaker"] for e in heard} == {first[2]}, heard
    assert later and {e["speaker"] for e in later} == {second[2]}, later
    assert min(e["t_start"] for e in later) > max(e["t_end"] for e in heard)
    assert "lost" not in d.output(), d.output()


def written(d: DaemonProcess, data: bytes) -> None:
    """``data`` written to the daemon's stdin, left open: the daemon took it all (a
    turn is seconds of audio; its ring buffer holds 30)."""
    writer = d.feed(data, close=False)
    writer.join(timeout=10)
    assert not writer.is_alive(), f"the daemon did not read it within 10 s: {d.output()}"


def events_for(d: DaemonProcess, sub: Any, seconds: float,
               until_final: bool = False) -> list[dict]:
    """Events for ``seconds``, or until a final turn if ``until_final``."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev = d.conn.receive(sub, 0.2)
        if ev is not None:
            out.append(ev)
            if until_final and ev.get("final"):
                break
    return out


def test_stdin_live_fed_fast_drops_windows_and_logs_how_many(
        tmp_path: Path, convo: Conversation) -> None:
    """`stdin:live` reads as it comes: fed 33 s of speech at once with room for 2 windows
    it drops, and WARNING lines (one at once, then at most one per 10 s) count every
    dropped window; before, 34 windows went without a word."""
    x = load_audio(convo.stream)
    d = daemon(tmp_path, "stdin:live", SMALL)
    sub = d.conn.subscribe(["status"])
    d.start()
    try:
        d.feed(pcm(np.concatenate([x, x])))
        finished = events_until(d, sub, "stdin", "finished", 60)[-1]
        code, _ = d.wait_exit(10)
    finally:
        d.stop()
    assert code == 0, d.output()
    lines = re.findall(r"WARNING vggvoxd\.livesources: stdin: dropped (\d+) windows and ([\d.]+) s "
                       r"of audio", d.output())
    print(f"dropped {finished['dropped_windows']} windows, "
          f"{finished['dropped_samples'] / 16000:.1f} s; log lines: {lines}")
    assert finished["dropped_windows"] > 0
    assert sum(int(n) for n, _ in lines) == finished["dropped_windows"]
    assert abs(sum(float(s) for _, s in lines) - finished["dropped_samples"] / 16000) < 0.2
    assert 1 <= len(lines) <= 3


def test_a_bad_stdin_uri_is_one_line() -> None:
    import sys

    run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--source", "stdin:fast"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2
    assert run.stderr == ("vggvoxd: --source must be mic, stdin, stdin:live, file:PATH, "
                          "rtsp://HOST/PATH, rtp://HOST:PORT, sdp:PATH, udp://HOST:PORT, "
                          "http://HOST/PATH or https://HOST/PATH, got 'stdin:fast'\n")


ROOT = Path(__file__).resolve().parent.parent
PIPE = re.compile(r"(\w+)[^|`\n]*\|\s*vggvoxd --source ([\w:]+)")
"""A pipe into vggvoxd in an example: what writes, and the source it is read as."""


def test_the_examples_pipe_a_capture_into_stdin_live_and_a_file_into_stdin() -> None:
    """On the lossless `stdin` a live capture (arecord) is never dropped from: when the
    daemon falls behind the room, it stays behind. `--help` and the docs showed it on
    `stdin`; a capture goes to `stdin:live`, a file or a program's output to `stdin`."""
    from vggvoxd.main import build_parser

    texts = {"vggvoxd --help": build_parser().format_help(),
             **{p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")},
             "README.md": (ROOT / "README.md").read_text(),
             "vggvoxd.yaml": (ROOT / "config" / "vggvoxd.yaml").read_text()}
    found = [(where, writer, source) for where, text in texts.items()
             for writer, source in PIPE.findall(text)]
    wrong = [f for f in found if f[2] != ("stdin:live" if f[1] == "arecord" else "stdin")]
    assert not wrong, wrong
    shown = {(where, writer) for where, writer, _ in found}
    assert {("vggvoxd --help", "arecord"), ("vggvoxd --help", "ffmpeg"),
            ("architecture.md", "arecord"), ("architecture.md", "ffmpeg"),
            ("README.md", "arecord"), ("README.md", "ffmpeg")} <= shown
