"""Real capture: PyAudio in the daemon records a private PulseAudio null sink's monitor
while the test plays a two-speaker conversation into the sink with paplay.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from daemon_proc import DaemonProcess
from speakers_fixture import Conversation, conversation, score_events

from vggvox.audio import load_audio
from vggvox_client.enroll import enroll
from vggvox_client.virtualmic import PulseServer

pytestmark = pytest.mark.skipif(
    not (shutil.which("pulseaudio") and shutil.which("paplay")),
    reason="pulseaudio and paplay are needed (make test installs them)")

MAX_BYTES = 16 * 1024 * 1024


@pytest.fixture
def pulse(tmp_path: Path):
    server = PulseServer(tmp_path / "pulse")
    server.start()
    yield server
    server.stop()


def collect(d: DaemonProcess, sub: Any, seconds: float,
            until: Callable[[dict], bool] | None = None) -> list[dict]:
    """Events for ``seconds``, or up to the first one that ``until`` holds for."""
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev = d.conn.receive(sub, 0.2)
        if ev is not None:
            events.append(ev)
            if until is not None and until(ev):
                break
    return events


def gone(ev: dict) -> bool:
    """A status event that says the microphone is lost, or waited for."""
    return ev["type"] == "status" and ev["state"] in ("lost", "waiting")


def wait_state(d: DaemonProcess, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.conn.request("status")["state"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"daemon not {state} after {timeout} s: {d.output()}")


def start_daemon(tmp_path: Path, pulse: PulseServer) -> DaemonProcess:
    """The daemon capturing from the virtual microphone, running."""
    d = DaemonProcess(tmp_path, source="mic", args=["--device", "pulse"], env=pulse.env).start()
    wait_state(d, "running", 15)
    return d


def play_and_collect(d: DaemonProcess, pulse: PulseServer, sub: Any, wav: Path,
                     silence_s: float = 1.5) -> tuple[list[dict], float]:
    """Events from silence, the recording, and silence; and the stream time playback began."""
    offset = d.conn.request("status")["stream_s"]
    player = pulse.play(wav)
    events = collect(d, sub, 0.5)
    player.wait(timeout=60)
    events += collect(d, sub, silence_s + 1.0)
    return events, offset


def test_live_capture_identifies_speakers(tmp_path: Path, pulse: PulseServer) -> None:
    convo: Conversation = conversation(tmp_path)
    d = start_daemon(tmp_path, pulse)
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, MAX_BYTES)
        sub = d.conn.subscribe(["speaker", "speech.start", "speech.end"])
        quiet = collect(d, sub, 1.5)
        assert quiet == [], "events from silence before playback"
        events, offset = play_and_collect(d, pulse, sub, convo.stream)
        sub.close()
    finally:
        d.stop()

    # Playback reaches the monitor a little after we asked: allow 0.3 s of latency.
    good, total = score_events(events, convo.turns, offset=offset + 0.15)
    assert total >= 10 and good / total >= 0.9, (good, total, events)

    turns = [(s + offset, e + offset) for s, e, _ in convo.turns]
    stream_end = turns[-1][1] + 0.6
    for ev in events:  # nothing from the silence around the conversation
        assert turns[0][0] - 0.1 <= ev["t_start"] and ev["t_end"] <= stream_end, ev
    starts = [e["t_start"] for e in events if e["type"] == "speech.start"]
    ends = [e["t_end"] for e in events if e["type"] == "speech.end"]
    assert len(starts) == len(ends) >= len(turns) // 2
    for s, e in turns:  # every turn lies inside some speech segment's span, give or take
        assert any(a <= s + 0.6 for a in starts) and any(b >= e - 0.6 for b in ends)
    segments = list(zip(starts, ends, strict=True))
    for a, b in segments:  # and every segment lies within a turn
        assert any(s - 0.3 <= a and b <= e + 0.6 for s, e in turns), (a, b, turns)


def test_daemon_resumes_when_the_sound_server_returns(tmp_path: Path,
                                                      pulse: PulseServer) -> None:
    convo = conversation(tmp_path)
    d = start_daemon(tmp_path, pulse)
    try:
        name, files = next(iter(convo.enroll.items()))
        enroll(d.conn, name, files, None, False, MAX_BYTES)
        sub = d.conn.subscribe(["status", "speaker"])
        pulse.stop()
        lost = [e for e in collect(d, sub, 6, until=gone) if e["type"] == "status"]
        assert any(e["state"] in ("lost", "waiting") for e in lost), lost
        # The server comes back only once a try to reopen the device has failed.
        deadline = time.monotonic() + 6
        while "waiting for one" not in d.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.1)
        pulse.start()
        wait_state(d, "running", 30)
        events, _ = play_and_collect(d, pulse, sub, files[0])
        named = [e["speaker"] for e in events if e["type"] == "speaker"]
        assert named and named.count(name) / len(named) >= 0.9
        sub.close()
    finally:
        d.stop()
    assert "input mic lost" in d.log.read_text(errors="replace")


def test_live_enrollment_from_the_daemons_microphone(tmp_path: Path,
                                                     pulse: PulseServer) -> None:
    convo = conversation(tmp_path)
    d = start_daemon(tmp_path, pulse)
    try:
        name, files = next(iter(convo.enroll.items()))
        clip = tmp_path / "enroll_live.wav"
        sf.write(str(clip), np.concatenate([load_audio(f) for f in files]), 16000)
        result: dict = {}

        def enroll_live() -> None:
            result.update(enroll(d.conn, name, [], 8.0, False, MAX_BYTES))

        t = threading.Thread(target=enroll_live)
        t.start()
        time.sleep(0.2)
        player = pulse.play(clip)
        t.join(timeout=40)
        player.wait(timeout=30)
        assert result.get("speaker") == name and result["speech_s"] >= 3.0, result
        speakers = d.conn.request("list")["speakers"]
        assert [s["name"] for s in speakers] == [name] and speakers[0]["embeddings"] == 1
    finally:
        d.stop()
