"""One daemon, several live sources at once (``sources:`` in the config).

Each source has its own clock, VAD, windows and turns; one executor embeds for
all. Real daemon processes, real ZeroMQ, real files played at real-time pace,
and real PyAudio capture from a PulseAudio null sink beside a file.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import Conversation, conversation, score_events

from vggvox.audio import load_audio
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll
from vggvox_client.virtualmic import PulseServer

MAX_BYTES = 16 * 1024 * 1024
LEAD_S = 2.0
"""Silence before the conversation in the second room: its clock and turns differ."""


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Conversation, Path]:
    """The conversation, and a store with its speakers enrolled through a first daemon:
    made once, copied by each test (``enrolled_store``)."""
    tmp = tmp_path_factory.mktemp("enrolled")
    convo = conversation(tmp)
    d = DaemonProcess(tmp).start()
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, MAX_BYTES)
    finally:
        d.stop()
    return convo, d.store


def enrolled_store(tmp: Path, enrolled: tuple[Conversation, Path]) -> Conversation:
    """A copy of the enrolled store where a daemon in ``tmp`` finds it; the conversation."""
    convo, store = enrolled
    shutil.copyfile(store, tmp / store.name)
    return convo


def config(tmp: Path, sources: list[dict[str, Any]]) -> Path:
    path = tmp / "vggvoxd.yaml"
    path.write_text(yaml.safe_dump({"sources": sources, "status": {"interval_s": 0.5}}))
    return path


def collect_until_finished(d: DaemonProcess, sub: Any, names: set[str],
                           timeout: float) -> list[dict]:
    events, finished, deadline = [], set(), time.monotonic() + timeout
    while finished != names and time.monotonic() < deadline:
        ev = d.conn.receive(sub, 0.2)
        if ev is None:
            continue
        events.append(ev)
        if ev["type"] == "status" and ev["state"] == "finished":
            finished.add(ev["source"])
    assert finished == names, (finished, d.output())
    return events


def test_several_file_sources_each_with_its_own_clock_and_turns(
        tmp_path: Path, enrolled: tuple[Conversation, Path]) -> None:
    convo = enrolled_store(tmp_path, enrolled)
    x = load_audio(convo.stream)
    later = tmp_path / "later.wav"
    sf.write(later, np.concatenate([np.zeros(int(LEAD_S * 16000), np.float32), x]), 16000)
    cfg = config(tmp_path, [{"name": "room1", "uri": f"file:{convo.stream}"},
                            {"name": "room2", "uri": f"file:{later}"}])
    d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)])
    d.start()
    try:
        sub = d.conn.subscribe(["speaker", "status"])
        status = d.conn.request("status")
        assert set(status["sources"]) == {"room1", "room2"}
        assert {"room1", "room2"} <= set(status["stages"])
        with pytest.raises(ClientError, match="no live source 'hall'") as e:
            d.conn.request("enroll", name="carol", live=3.0, source="hall")
        assert e.value.code == "not_found"
        events = collect_until_finished(d, sub, {"room1", "room2"}, len(x) / 16000 + LEAD_S + 30)
        # A sources: list is a service: it goes on serving after its files end.
        time.sleep(2.5)
        assert d.proc is not None and d.proc.poll() is None, d.output()
        status = d.conn.request("status")
        with pytest.raises(ClientError, match="the source room1 is finished"):
            d.conn.request("enroll", name="carol", live=3.0, source="room1")
    finally:
        code, _ = d.stop()
    assert code == 0, d.output()
    assert all(s["state"] == "finished" and s["dropped_windows"] == 0
               for s in status["sources"].values()), status
    # Their stages say so too, not "ok": no audio goes through them (issue 20).
    assert status["stages"]["room1"]["state"] == status["stages"]["room2"]["state"] == \
        "finished", status["stages"]
    for name, offset in (("room1", 0.0), ("room2", LEAD_S)):
        mine = [e for e in events if e["source"] == name]
        good, total = score_events(mine, convo.turns, offset=offset)
        assert total >= 10 and good / total >= 0.9, (name, good, total)
        # Its own clock: nothing before its own speech begins.
        assert min(e["t_start"] for e in mine if e["type"] == "speaker") >= offset + \
            convo.turns[0][0] - 0.1


@pytest.mark.skipif(not (shutil.which("pulseaudio") and shutil.which("paplay")),
                    reason="pulseaudio and paplay are needed (make test installs them)")
def test_a_microphone_and_a_file_at_once(tmp_path: Path,
                                        enrolled: tuple[Conversation, Path]) -> None:
    convo = enrolled_store(tmp_path, enrolled)
    pulse = PulseServer(tmp_path / "pulse")
    pulse.start()
    try:
        cfg = config(tmp_path, [{"name": "desk", "device": "pulse"},
                                {"name": "archive", "uri": f"file:{convo.stream}"}])
        d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)], env=pulse.env)
        d.start()
        try:
            sub = d.conn.subscribe(["speaker", "status"])
            deadline = time.monotonic() + 15
            while d.conn.request("status")["sources"]["desk"]["state"] != "running":
                assert time.monotonic() < deadline, d.output()
                time.sleep(0.1)
            offset = d.conn.request("status")["sources"]["desk"]["stream_s"]
            player = pulse.play(convo.stream)
            events = collect_until_finished(d, sub, {"archive"}, 60)
            player.wait(timeout=60)
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                ev = d.conn.receive(sub, 0.2)
                if ev is not None:
                    events.append(ev)
            # A live recording from the named source reaches the enrollment path.
            reply = d.conn.request("enroll", name="carol", live=1.0, source="desk", timeout=30)
        except ClientError as e:
            reply = {"ok": False, "error": str(e)}
        finally:
            code, _ = d.stop()
    finally:
        pulse.stop()
    assert code == 0, d.output()
    # 1 s of silence from the null sink: refused for want of speech, but recorded from desk.
    assert "speech" in reply.get("error", ""), reply
    good, total = score_events([e for e in events if e["source"] == "archive"], convo.turns)
    assert total >= 10 and good / total >= 0.9, ("archive", good, total)
    good, total = score_events([e for e in events if e["source"] == "desk"], convo.turns,
                               offset=offset + 0.15)
    assert total >= 10 and good / total >= 0.9, ("desk", good, total)
