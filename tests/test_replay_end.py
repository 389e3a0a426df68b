"""How a replay ends (issue 20): real daemons, real clients, real speech.

- a client killed mid-file: its session ends with one ``finished`` status event,
  ``abandoned: true``, within 10 s, and nothing of it follows;
- a client that sent ``final`` is never ended for silence, however long its last
  windows take;
- but one whose end is never reported (the executor lost its last marker) is ended
  as abandoned once it makes no progress for ``STALL_S``, and frees its slot;
- a replay's unknown voices can be named after it ended, for a while, and only the
  latest few replays' are kept; a ``name`` refused for its request id keeps the voice.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import yaml
from daemon_proc import DaemonProcess
from floods import dealer
from speakers_fixture import Conversation

from conftest import write_wav
from vggvox.audio import load_audio
from vggvox_client.connection import ClientError
from vggvox_client.replay import replay_one
from vggvoxd.replays import ABANDON_S, MAX_KEPT

CLIENT = Path(sys.executable).parent / "vggvox-client"


def daemon(tmp: Path, settings: dict[str, Any] | None = None) -> DaemonProcess:
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump(settings or {}))
    return DaemonProcess(tmp, args=["--config", str(cfg)]).start()


def test_a_killed_replay_client_gets_finished_abandoned_within_10_s(
        tmp_path: Path, convo: Conversation) -> None:
    """It was reaped after 60 s with no `finished` event: the MQTT bridge kept the
    replay's Home Assistant entities forever."""
    d = daemon(tmp_path)
    sub = d.conn.subscribe()
    time.sleep(0.3)
    client = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "replay", str(convo.stream), "--realtime"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events: list[dict] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any(e["type"] == "speaker" for e in events):
            ev = d.conn.receive(sub, 0.2)
            if ev is not None and ev["source"].startswith("replay:"):
                events.append(ev)
        assert events, d.output()
        source = events[0]["source"]
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=5)
        killed = time.time()
        finished: dict | None = None
        while time.monotonic() < deadline + 15 and finished is None:
            ev = d.conn.receive(sub, 0.2)
            if ev is not None and ev["source"] == source:
                events.append(ev)
                if ev["type"] == "status" and ev["state"] == "finished":
                    finished = ev
        assert finished is not None, d.output()
        took = finished["time"] - killed
        after = [ev for ev in (d.conn.receive(sub, 0.2) for _ in range(10))
                 if ev is not None and ev["source"] == source]
        status = d.conn.request("status")
    finally:
        client.kill()
        code, _ = d.stop()
    print(f"finished (abandoned) {took:.1f} s after the client was killed")
    # 5 s after its last request, which came up to a second (a chunk) before the kill.
    assert finished["abandoned"] is True and ABANDON_S - 1.5 < took < 10, (took, finished)
    assert not after, after
    assert status["replays"] == 0
    assert code == 0 and f"replay {source} abandoned: no request for" in d.output()


def test_a_replay_that_sent_final_is_not_ended_for_silence(tmp_path: Path,
                                                         convo: Conversation) -> None:
    """6 min of speech, all accepted at once by a big buffer, then `final`: the client
    says nothing more while the daemon decides it (more than ABANDON_S), and every
    window is still decided; its finished event is not `abandoned`."""
    x = load_audio(convo.stream)
    minutes = np.tile(x, int(360 * 16000 / len(x)) + 1)[: 360 * 16000]
    d = daemon(tmp_path, {"audio": {"buffer_s": 400.0}, "window": {"max_batch": 1}})
    session = "f" * 32
    sub = d.conn.subscribe(["status", "speaker"])
    time.sleep(0.3)
    try:
        pcm = (minutes * 32767).astype("<i2")
        step = 30 * 16000
        for i in range(0, len(pcm), step):
            part = pcm[i: i + step]
            reply = d.conn.request("replay", session=session, label="long",
                                   audio=part.tobytes(), final=i + step >= len(pcm))
            assert reply["accepted"] == len(part)
        sent = time.monotonic()
        windows, finished = 0, None
        while finished is None and time.monotonic() - sent < 120:
            ev = d.conn.receive(sub, 0.5)
            if ev is None or not ev["source"].startswith("replay:long-"):
                continue
            windows += ev["type"] == "speaker"
            if ev["type"] == "status" and ev["state"] == "finished":
                finished = ev
        took = time.monotonic() - sent
    finally:
        code, _ = d.stop()
    print(f"{windows} windows decided in {took:.1f} s after the final block")
    assert finished is not None and finished["abandoned"] is False, d.output()
    assert took > ABANDON_S, "too quick to show anything: make the audio longer"
    assert windows >= 500 and finished["dropped_windows"] == 0
    assert code == 0 and "abandoned" not in d.output()


def test_a_replays_unknown_voices_can_be_named_after_it_ends(
        tmp_path: Path, convo: Conversation) -> None:
    """`vggvox-client replay conv.wav` then `name unknown-1 bob` said "no unknown voice
    'unknown-1' (now: {'mic': []})". Now the voices of the latest MAX_KEPT replays are
    kept for min(10 min, unknowns.max_age_s) after they end; an error lists them in
    words."""
    d = daemon(tmp_path, {"unknowns": {"max_age_s": 10.0}})
    try:
        clip = write_wav(tmp_path / "conv.wav", load_audio(convo.stream))
        sources = []
        for _ in range(MAX_KEPT + 1):
            events = replay_one(d.conn, clip, realtime=False, as_json=True,
                                timeout=60, echo=False)
            sources.append(events[0]["source"])
        ended = time.monotonic()
        time.sleep(0.3)  # the run loop has dropped the last session (keeping its voices)
        kept = d.conn.request("status")["unknowns"]
        assert set(kept) == {"stdin", *sources[1:]}, kept  # the oldest one is gone
        with pytest.raises(ClientError) as e:
            d.conn.request("name", unknown="unknown-9", name="bob")
        listing = "; ".join(f"{s}: unknown-1, unknown-2" for s in sources[1:])
        assert str(e.value).endswith(f"no unknown voice 'unknown-9' on any stream (unknown "
                                     f"voices now: stdin: none; {listing})"), str(e.value)
        sub = d.conn.subscribe(["named"])
        time.sleep(0.3)
        reply = d.conn.request("name", unknown="unknown-1", name="bob", source=sources[-1],
                               request="name-bob-0001", timeout=30)
        named = d.conn.receive(sub, 5)
        assert reply["source"] == sources[-1] and reply["speaker"] == "bob"
        assert d.conn.request("cancel", request="name-bob-0001") == {
            "ok": True, "request": "name-bob-0001", "state": "done", "action": "added",
            "speaker": "bob"}
        assert named is not None and named["source"] == sources[-1] and named["turns"]
        time.sleep(max(0.0, ended + 10.5 - time.monotonic()))  # past unknowns.max_age_s
        with pytest.raises(ClientError, match=f"no stream '{sources[-1]}' with unknown "
                                              r"voices \(streams: stdin\)"):
            d.conn.request("name", unknown="unknown-2", name="carol", source=sources[-1])
    finally:
        code, _ = d.stop()
    assert code == 0


def test_a_name_refused_for_its_request_id_keeps_the_voice(
        tmp_path: Path, convo: Conversation) -> None:
    """`name` took the voice out of its stream before checking the request id: an id
    still under way was refused, and the voice was gone for good (status no longer
    listed it, and it could not be named). Now it stays, and can then be named."""
    d = daemon(tmp_path)
    sock = dealer(d.conn.control)
    try:
        clip = write_wav(tmp_path / "conv.wav", load_audio(convo.stream))
        source = replay_one(d.conn, clip, realtime=False, as_json=True, timeout=60,
                            echo=False)[0]["source"]
        writer = d.feed(b"\0" * 32000, close=False)  # stdin runs: 1 s of silence
        writer.join(timeout=10)
        assert not writer.is_alive(), d.output()
        deadline = time.monotonic() + 10
        while d.conn.request("status")["sources"]["stdin"]["state"] != "running":
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.05)
        # A live recording holds the id until cancelled; the name comes after it on the
        # same connection, so the daemon takes them in that order.
        for op, fields in (("enroll", {"name": "dan", "live": 30.0}),
                           ("name", {"unknown": "unknown-1", "name": "bob", "source": source})):
            sock.send_multipart([b"", msgpack.packb({"op": op, "request": "dup-request-1",
                                                     **fields})])
        refused = msgpack.unpackb(sock.recv_multipart()[-1]) if sock.poll(5000) else None
        assert refused is not None and refused["ok"] is False, refused
        assert "request 'dup-request-1' is already under way" in refused["error"]
        assert "unknown-1" in d.conn.request("status")["unknowns"][source]
        named = d.conn.request("name", unknown="unknown-1", name="bob", source=source,
                               request="name-bob-0002", timeout=30)
        assert named["speaker"] == "bob" and named["unknown"] == "unknown-1"
        assert "unknown-1" not in d.conn.request("status")["unknowns"][source]
        assert d.conn.request("cancel", request="dup-request-1")["state"] == "cancelled"
    finally:
        sock.close()
        code, _ = d.stop()
    assert code == 0


LOSES_FLUSHES = """
import sys

import vggvoxd.replays
from vggvoxd.executor import EmbedExecutor, Flush
from vggvoxd.main import main

vggvoxd.replays.STALL_S = float(sys.argv.pop(1))
process = EmbedExecutor._process


def losing(self, jobs):
    # The batch that held each replay's last marker is lost (as a failed batch is):
    # the executor never reports its end.
    process(self, [j for j in jobs if not (isinstance(j.item, Flush)
                                           and j.sink.name.startswith("replay:"))])


EmbedExecutor._process = losing
sys.exit(main())
"""


def test_a_replay_whose_end_is_never_reported_is_ended_and_frees_its_slot(
        tmp_path: Path, convo: Conversation) -> None:
    """A replay that sent `final` is never ended for silence; but if its end is never
    reported (here the real daemon's executor loses each replay's last marker), its
    slot, one of MAX_REPLAYS, was held for good. Now a session that makes no progress
    for STALL_S (60 s; 3 s here) after its input ended is ended as abandoned, with its
    `finished` event, and the slot is free again."""
    from vggvoxd.replays import MAX_REPLAYS

    stall = 3.0
    d = DaemonProcess(tmp_path)
    d.argv = [sys.executable, "-c", LOSES_FLUSHES, str(stall), *d.argv[3:]]
    d.start()
    sub = d.conn.subscribe(["status", "speaker"])
    time.sleep(0.3)
    pcm = (load_audio(convo.stream)[: 6 * 16000] * 32767).astype("<i2").tobytes()
    last: dict[str, float] = {}
    finished: dict[str, dict] = {}
    try:
        for i in range(MAX_REPLAYS):
            d.conn.request("replay", session=f"{i}" * 32, label=f"r{i}", audio=pcm, final=True)
        with pytest.raises(ClientError, match="too many replays at once"):
            d.conn.request("replay", session="x" * 32, label="more", audio=b"")
        deadline = time.monotonic() + 60
        while len(finished) < MAX_REPLAYS and time.monotonic() < deadline:
            ev = d.conn.receive(sub, 0.2)
            if ev is None or not ev["source"].startswith("replay:"):
                continue
            if ev["type"] == "speaker":
                last[ev["source"]] = ev["time"]
            elif ev["state"] == "finished":
                finished[ev["source"]] = ev
        time.sleep(0.3)  # the run loop drops the reported sessions
        status = d.conn.request("status")
        more = d.conn.request("replay", session="x" * 32, label="more", audio=pcm[:3200])
    finally:
        code, _ = d.stop()
    assert len(finished) == MAX_REPLAYS, d.output()
    for source, ev in finished.items():
        waited = ev["time"] - last[source]
        print(f"{source}: finished (abandoned) {waited:.1f} s after its last window")
        assert ev["abandoned"] is True and stall - 0.5 < waited < stall + 10, (waited, ev)
    assert status["replays"] == 0 and more["accepted"] == 1600
    assert d.output().count("its end was never reported; ending it as abandoned") == 4
    assert code == 0
