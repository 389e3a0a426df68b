"""Satellites: remote microphones streaming to a daemon over ZeroMQ with CURVE.

The link's messages byte for byte, the settings' checks, and one real daemon with
CURVE keys (module-scoped): a satellite capturing a private PulseAudio null sink's
monitor names the speakers of a conversation played into it; a key outside
``security.satellites`` is refused (and a satellite's key opens nothing else); a
link cut by a loopback proxy is counted as loss, by both ends alike, and turns
resume after it returns; a satellite that stops (bye) leaves ``status`` at once, one
killed once silent for ``satellites.forget_s``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import numpy as np
import pytest
import yaml
from daemon_proc import DaemonProcess, free_port, stop_process
from speakers_fixture import Conversation, conversation
from tcpproxy import TcpProxy

from conftest import write_wav
from vggvox.audio import load_audio
from vggvox.protocol.errors import RequestError
from vggvox.protocol.keys import keygen
from vggvox.protocol.satellite import (
    DOWNSTREAM,
    UPSTREAM,
    Ack,
    Bye,
    Hello,
    Pcm,
    Ping,
    Refused,
    Welcome,
    decode,
)
from vggvox_client.cli import main as client_main
from vggvox_client.connection import ClientError, Connection
from vggvox_client.enroll import enroll
from vggvox_client.virtualmic import PulseServer
from vggvoxd import config
from vggvoxd.satellite_server import SatelliteServer
from vggvoxd.satellites import PACE_BURST_S, Satellite, Satellites, SatelliteSource

SESSION = "0123456789abcdef0123456789abcdef"
FORGET_S = 6.0
"""The fleet's satellites.forget_s: longer than the cut test's silence (~3 s)."""


def test_link_messages_byte_for_byte() -> None:
    cases: list[tuple[Any, bytes]] = [
        (Hello(1, "kitchen", SESSION, 0, 320),
         b"\x86\xa1t\xa5hello\xa1v\x01\xa4name\xa7kitchen\xa7session\xd9 " + SESSION.encode()
         + b"\xa5start\x00\xa3end\xcd\x01@"),
        (Pcm(16000, b"\x01\x00\xff\xff", 3), b"\x84\xa1t\xa3pcm\xa3pos\xcd>\x80\xa5audio"
         b"\xc4\x04\x01\x00\xff\xff\xa4lost\x03"),
        (Ping(0), b"\x82\xa1t\xa4ping\xa4lost\x00"),
        (Bye(), b"\x81\xa1t\xa3bye"),
        (Welcome("kitchen", 320), b"\x83\xa1t\xa7welcome\xa6source\xa7kitchen\xa4next\xcd\x01@"),
        (Ack(320), b"\x82\xa1t\xa3ack\xa4next\xcd\x01@"),
        (Refused("too many", True), b"\x83\xa1t\xa7refused\xa5error\xa8too many\xa5retry\xc3"),
    ]
    for msg, wire in cases:
        assert msg.encode() == wire, msg
        assert decode(wire, UPSTREAM if type(msg) in UPSTREAM.values() else DOWNSTREAM) == msg


@pytest.mark.parametrize(("wire", "error"), [
    ({"t": "pcm", "pos": 0, "audio": b"\0", "lost": 0}, "odd number of bytes"),
    ({"t": "pcm", "pos": -1, "audio": b"", "lost": 0}, "'pos' must be a sample position"),
    ({"t": "pcm", "pos": 0, "audio": "text", "lost": 0}, "'audio' must be"),
    ({"t": "pcm", "pos": 0, "lost": 0}, "missing field 'audio'"),
    ({"t": "hello", "v": 1, "name": "k", "session": "short", "start": 0, "end": 0},
     "'session' must be 16 to 64"),
    ({"t": "hello", "v": 1, "name": "k", "session": SESSION, "start": 9, "end": 1},
     "'end' is before 'start'"),
    ({"t": "welcome", "source": "k", "next": 0}, "unknown message 'welcome'"),
    ({"t": True}, "field 't' must be"),
    ([1, 2], "msgpack map"),
    (7, "must be a msgpack map, got int"),
])
def test_malformed_messages_are_refused_naming_the_field(wire: Any, error: str) -> None:
    with pytest.raises(RequestError, match=error):
        decode(msgpack.packb(wire), UPSTREAM)


def test_sizes_are_bounded_before_decoding() -> None:
    with pytest.raises(RequestError, match="at most"):
        decode(b"\0" * 40_000, UPSTREAM)
    big = msgpack.packb({"t": "pcm", "pos": 0, "audio": b"\0" * 32_002, "lost": 0})
    with pytest.raises(RequestError):
        decode(big, UPSTREAM)


def test_a_satellite_faster_than_real_time_is_paced(caplog: pytest.LogCaptureFixture) -> None:
    """A satellite may send its backlog at once (PACE_BURST_S), then no faster than its
    clock: what comes faster is skipped and counted, so that it cannot push every other
    source's windows out of the shared live queue (bench/abuse_satellites.py: 5,800x
    real time starved the others). Gaps cost their silence too, and are logged once."""
    pushed: list[int] = []
    source = SatelliteSource("k")
    source.start(lambda x: pushed.append(len(x)))
    sat = Satellite("k", "", b"peer", SESSION, 0, 100.0)
    sat.live, sat.paced = SimpleNamespace(stream=SimpleNamespace(source=source)), 100.0  # type: ignore[assignment]
    second = b"\1\0" * 16000
    for i in range(60):  # 60 s of audio at one instant
        SatelliteServer._audio(sat, Pcm(16000 * i, second, 0), 100.0)
    assert sum(pushed) == PACE_BURST_S * 16000 and sat.throttled == 50 * 16000
    assert sat.next == 60 * 16000, "skipped audio is acknowledged: it is not sent again"
    SatelliteServer._audio(sat, Pcm(sat.next, second, 0), 105.0)  # 5 s later: 5.5 s allowed
    assert sum(pushed) == (PACE_BURST_S + 1) * 16000
    del pushed[:]
    for _ in range(100):  # every frame a jump forward: each gap's silence counts
        SatelliteServer._audio(sat, Pcm(sat.next + 10 * 16000, b"\1\0" * 320, 0), 105.0)
    assert sum(pushed) <= 4.5 * 16000 and sat.lost_samples == 100 * 10 * 16000
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) <= 2, [r.getMessage() for r in warnings]


def registry(add_room: Callable[[str], None] = lambda name: None,
             drop_room: Callable[[str], None] = lambda name: None,
             max_: int = 3) -> tuple[Satellites, SatelliteServer]:
    """A registry and its socket's handler, in-process (no socket bound): streams that
    are stand-ins, status events dropped."""
    settings = config.parse({"satellites": {"max": max_, "forget_s": 60.0}}).satellites

    def stream(source: Any) -> Any:
        return SimpleNamespace(name=source.name, source=source, start=lambda: None,
                               stop=lambda: None, dropped_windows=0,
                               ring=SimpleNamespace(dropped=0))

    sats = Satellites(settings, ["stdin"], stream, add_room, drop_room, lambda live: None,
                      lambda live: SimpleNamespace(), lambda ev: None, 1.0)
    sats._status_stopped = lambda live: SimpleNamespace()  # type: ignore[method-assign]
    return sats, SatelliteServer("inproc://unused", sats, {})


def hello(server: SatelliteServer, peer: bytes, key: str, name: str, now: float) -> Any:
    with server.sats.lock:
        return server.handle(peer, key, Hello(1, name, SESSION + peer.hex(), 0, 0), now)


def test_one_name_per_key() -> None:
    """A key joined under one name is refused a second while the first is known (one key
    must not take every free slot), saying why; once the first leaves it may join."""
    sats, server = registry()
    assert hello(server, b"a", "K", "kitchen", 0.0) is None  # pending: the run loop welcomes
    sats.tick(0.0)
    refused = hello(server, b"b", "K", "hall", 0.1)
    assert isinstance(refused, Refused) and refused.retry, refused
    assert "joined as 'kitchen'" in refused.error and "one name per key" in refused.error
    assert hello(server, b"c", "L", "hall", 0.1) is None, "another key may"
    assert isinstance(hello(server, b"a2", "K", "kitchen", 0.2), Welcome), "its own name: yes"
    with sats.lock:
        server.handle(b"a2", "K", Bye(), 0.3)
    sats.tick(0.4)
    assert "kitchen" not in sats.by_name
    assert hello(server, b"b", "K", "office", 0.5) is None, "the first left: it may"
    # Without CURVE no key tells satellites apart: each may join under its own name.
    sats, server = registry()
    assert hello(server, b"a", "", "kitchen", 0.0) is None
    assert hello(server, b"b", "", "hall", 0.0) is None


def test_a_satellite_that_leaves_and_rejoins_finds_its_room(tmp_path: Path) -> None:
    """A satellite's room is saved and forgotten when it leaves (names used once cost no
    memory: abuse_satellites' churn kept 200 rooms), and given back, with what it heard
    and its enrollment clips' evidence, when it rejoins."""
    from test_rooms import CAL

    from vggvox.calibration import AcceptRule
    from vggvox.store import VoiceprintStore
    from vggvox.voiceprints import VoiceprintSet
    from vggvoxd.rooms import Rooms

    store = VoiceprintStore(tmp_path / "v.db")
    v = np.eye(4, dtype=np.float32)
    store.enroll("ann", v[:2], "m@1", ["kitchen:live", "clip"], [3, 4])
    store.enroll("bob", v[2:3], "m@1", ["clip"], [5])
    card = SimpleNamespace(sha256="sha-a", embedding_size=4)
    rooms = Rooms(["stdin"], lambda source: AcceptRule(0.005, None, CAL), True, store,
                  card)  # type: ignore[arg-type]
    rooms.enrollment_changed(VoiceprintSet.from_store(store, "m@1", 4))
    sats, server = registry(rooms.add, rooms.drop)
    hello(server, b"a", "K", "kitchen", 0.0)
    sats.tick(0.0)
    room = rooms.get("kitchen")
    assert room is not None and room.summary()["enrolled_scores"] == 1
    for _ in range(40):
        room.heard(np.array([0.6]), 3.0)
    before = room.summary()
    assert before["heard_scores"] == 40 and before["shift_sd"] > 0, before
    with sats.lock:
        server.handle(b"a", "K", Bye(), 1.0)
    sats.tick(1.0)
    assert set(rooms.rooms) == {"stdin"}, "a satellite gone keeps no room in memory"
    hello(server, b"a", "K", "kitchen", 2.0)
    sats.tick(2.0)
    again = rooms.get("kitchen")
    assert again is not None and again is not room and again.summary() == before


def test_a_room_the_store_refuses_stays_until_it_is_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A satellite leaves while the store refuses writes: its room is not lost but kept,
    and the run loop's next save writes it and only then forgets it."""
    from test_rooms import CAL

    from vggvox import roomstore
    from vggvox.calibration import AcceptRule
    from vggvox.errors import StoreError
    from vggvox.store import VoiceprintStore
    from vggvoxd.rooms import Rooms

    store = VoiceprintStore(tmp_path / "v.db")
    card = SimpleNamespace(sha256="sha-a", embedding_size=4)
    rooms = Rooms([], lambda source: AcceptRule(0.005, None, CAL), True, store,
                  card)  # type: ignore[arg-type]
    rooms.add("kitchen")
    room = rooms.get("kitchen")
    assert room is not None
    room.heard(np.array([0.6]), 3.0)
    save = roomstore.save

    def refuse(*args: Any) -> None:
        raise StoreError("read-only")

    monkeypatch.setattr(roomstore, "save", refuse)
    rooms.drop("kitchen")
    rooms.save(force=True)
    assert rooms.get("kitchen") is room, "not saved: kept"
    monkeypatch.setattr(roomstore, "save", save)
    rooms.save(force=True)
    assert rooms.get("kitchen") is None
    assert roomstore.load(store, "kitchen", "sha-a", CAL) is not None
    # A read-only store never takes it: forgotten at once, not kept for good.
    rooms.add("hall")
    hall = rooms.get("hall")
    assert hall is not None
    hall.heard(np.array([0.6]), 3.0)
    monkeypatch.setattr(roomstore, "save", refuse)
    monkeypatch.setattr(VoiceprintStore, "read_only", property(lambda self: "read-only"))
    rooms.drop("hall")
    assert rooms.get("hall") is None


def test_a_flood_of_unknown_keys_logs_a_bounded_number_of_lines(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """One WARNING per refused handshake was 67 lines/s under a flood (abuse_satellites):
    the first few name their key, then one line per REFUSED_LOG_S counts the rest, and
    what is left unsaid is counted at stop."""
    from vggvoxd import curveauth

    now = [1000.0]
    monkeypatch.setattr(curveauth.time, "monotonic", lambda: now[0])
    curve = curveauth.Curve(config.SecuritySettings())
    for i in range(3000):  # 100 handshakes a second for 30 s
        now[0] += 0.01
        assert not curve.callback(curveauth.SATELLITE_DOMAIN, f"key{i}".encode())
    assert not curve.callback(curveauth.ZAP_DOMAIN, b"client-key"), "its own domain's lines"
    curve.stop()
    lines = [r.getMessage() for r in caplog.records if "CURVE: refused" in r.getMessage()]
    burst = curveauth.REFUSED_BURST
    assert len(lines) <= burst + 30 / curveauth.REFUSED_LOG_S + 2, lines
    assert lines[0].startswith("CURVE: refused a satellite with an unknown key key0")
    assert "refused a client with an unknown key client-key" in lines[-2]
    counted = sum(int(m.group(1)) for line in lines if (m := re.search(r"(\d+) more", line)))
    assert counted + sum("with an unknown key key" in line for line in lines) == 3000, lines
    assert "3000 in all" in lines[-1], lines


def test_satellite_settings_are_checked(tmp_path: Path) -> None:
    assert config.parse({}).satellites.listen is None, "off by default"
    for host in ("0.0.0.0", "192.168.1.4", "[::]"):
        with pytest.raises(config.ConfigError, match="satellites beyond this machine need"):
            config.parse({"satellites": {"listen": f"tcp://{host}:5562"}})
    with pytest.raises(config.ConfigError, match="'satellites.listen' must be tcp://"):
        config.parse({"satellites": {"listen": "udp://x:1"}})
    with pytest.raises(config.ConfigError, match="satellites.max"):
        config.parse({"satellites": {"max": 0}})
    with pytest.raises(config.ConfigError, match="'security.satellites' needs"):
        config.parse({"security": {"satellites": str(tmp_path)}})
    keygen(tmp_path, "d")
    with pytest.raises(config.ConfigError, match="needs 'security.satellites'"):
        config.parse({"satellites": {"listen": "tcp://0.0.0.0:5562"},
                      "security": {"server_key": str(tmp_path / "d.key_secret"),
                                   "admins": str(tmp_path)}})


def test_the_command_prints_its_unit_and_refuses_bad_arguments(capsys) -> None:
    assert client_main(["satellite", "--print-unit"]) == 0
    assert "vggvox-client satellite $VGGVOX_SATELLITE_ARGS" in capsys.readouterr().out
    for args, error in [(["--name", "x"], "needs --server ENDPOINT and --name NAME"),
                        (["--server", "tcp://127.0.0.1:1", "--name", "x", "--buffer-s", "0"],
                         "--buffer-s must be 0.5..3600"),
                        (["--server", "tcp://127.0.0.1:1", "--name", "x", "--key", "k"],
                         "CURVE needs both"),
                        (["--server", "tcp://127.0.0.1:1", "--name", "x", "--device",
                          "file:/nonexistent.wav"], "cannot read it as audio")]:
        assert client_main(["satellite", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and error in err[0], err


# -- a real daemon ------------------------------------------------------------------------

@dataclass
class Fleet:
    daemon: DaemonProcess
    keys: Path
    listen: str
    convo: Conversation
    clip: Path
    """The conversation's first two turns (one per speaker)."""
    names: list[str]
    metrics: str
    """HOST:PORT of its /metrics."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("satellites")
    keys = tmp / "keys"
    keygen(keys, "vggvoxd")
    keygen(keys / "admins", "alice")
    for name in ("kitchen", "hall"):
        keygen(keys / "satellites", name)
    keygen(keys / "strangers", "mallory")
    port = free_port()
    (tmp / "vggvoxd.yaml").write_text(yaml.safe_dump({
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "satellites": str(keys / "satellites")},
        "satellites": {"listen": f"tcp://127.0.0.1:{port}", "timeout_s": 1.0,
                       "forget_s": FORGET_S},
        "status": {"interval_s": 0.5}, "metrics": {"listen": f"127.0.0.1:{free_port()}"}}))
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(tmp, args=["--config", str(tmp / "vggvoxd.yaml"), "--events", events,
                                 "--control", control])
    d.conn = Connection(control, events, 10, keys / "vggvoxd.key",
                        keys / "admins/alice.key_secret")
    convo = conversation(tmp)
    # 3 s of each voice: long enough for a sure turn each, short enough to play quickly.
    x, (a, _, _), (b, _, _) = load_audio(convo.stream), convo.turns[0], convo.turns[1]
    parts = [x[round(a * 16000):round((a + 3) * 16000)], np.zeros(8000, np.float32),
             x[round(b * 16000):round((b + 3) * 16000)], np.zeros(8000, np.float32)]
    clip = write_wav(tmp / "two_turns.wav", np.concatenate(parts))
    d.start()
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, 16 << 20)
        yield Fleet(d, keys, f"tcp://127.0.0.1:{port}", convo, clip,
                    [convo.turns[0][2], convo.turns[1][2]],
                    yaml.safe_load((tmp / "vggvoxd.yaml").read_text())["metrics"]["listen"])
    finally:
        d.stop()


def satellite(f: Fleet, name: str, *args: str, key: str | None = None,
              server: str | None = None, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vggvox_client.cli", "--log-level", "INFO", "satellite",
         "--server", server or f.listen, "--name", name,
         "--server-key", str(f.keys / "vggvoxd.key"),
         "--key", str(f.keys / (key or f"satellites/{name}.key_secret")), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


def sources(f: Fleet) -> dict[str, Any]:
    return f.daemon.conn.request("status")["sources"]


def wait_for(what: Callable[[], Any], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := what():
            return found
        time.sleep(0.1)
    raise AssertionError(why)


def events(f: Fleet, sub: Any, until: Callable[[dict], bool], timeout: float) -> list[dict]:
    """Events until one that ``until`` holds for (included), at most ``timeout`` s."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = Connection.receive(sub, 0.2)
        if ev is not None:
            got.append(ev)
            if until(ev):
                return got
    raise AssertionError(f"not seen in {timeout} s: {got[-5:]} {f.daemon.output()}")


def test_only_a_satellites_key_opens_the_satellites_socket(fleet: Fleet) -> None:
    f = fleet
    intruders = [satellite(f, "mallory", "--device", f"file-loop:{f.clip}",
                           key="strangers/mallory.key_secret"),
                 satellite(f, "alice", "--device", f"file-loop:{f.clip}",
                           key="admins/alice.key_secret")]
    try:
        time.sleep(2.5)
        assert not {"mallory", "alice"} & set(sources(f)), "an unknown key joined"
        # ...and a satellite's key gets no answer on the control socket.
        as_kitchen = Connection(f.daemon.conn.control, f.daemon.conn.events, 1.5,
                                f.keys / "vggvoxd.key", f.keys / "satellites/kitchen.key_secret")
        with pytest.raises(ClientError, match="no answer"):
            as_kitchen.request("status")
    finally:
        for p in intruders:
            stop_process(p)
    assert f.daemon.output().count("refused a satellite with an unknown key") >= 2


@pytest.mark.skipif(not (shutil.which("pulseaudio") and shutil.which("paplay")),
                    reason="pulseaudio and paplay are needed (make test installs them)")
def test_a_satellite_names_the_speakers_and_leaves_status(fleet: Fleet, tmp_path: Path) -> None:
    f = fleet
    pulse = PulseServer(tmp_path / "pulse")
    pulse.start()
    sub = f.daemon.conn.subscribe(["turn"])
    sat = satellite(f, "kitchen", "--device", "pulse", env={**os.environ, **pulse.env})
    try:
        wait_for(lambda: sources(f).get("kitchen", {}).get("state") == "running", 10,
                 "the satellite never joined")
        pulse.play(f.clip).wait(timeout=30)
        got = events(f, sub, lambda ev: ev["source"] == "kitchen" and ev["final"]
                     and ev["speaker"] == f.names[1], 6)
        finals = [ev["speaker"] for ev in got if ev["source"] == "kitchen" and ev["final"]]
        # A pause inside a turn may split it: one voice after the other, in order.
        assert [k for k, _ in groupby(s for s in finals if s)] == f.names, got
        sat.send_signal(signal.SIGTERM)
        sat.wait(timeout=5)
        wait_for(lambda: "kitchen" not in sources(f), 2, "a satellite that said bye stayed")
    finally:
        sub.close()
        stop_process(sat)
        pulse.stop()


def test_a_cut_link_is_counted_and_turns_resume(fleet: Fleet) -> None:
    f = fleet
    proxy = TcpProxy(int(f.listen.rsplit(":", 1)[1]))
    sub = f.daemon.conn.subscribe(["turn", "status"])
    sat = satellite(f, "hall", "--device", f"file-loop:{f.clip}", "--buffer-s", "1",
                    "--timeout-s", "1", "--reconnect-max-s", "0.5", server=proxy.endpoint)
    out = ""
    try:
        events(f, sub, lambda ev: ev["source"] == "hall" and ev["type"] == "turn", 10)
        status = f.daemon.conn.request("status")
        assert status["stages"]["satellites"]["state"] == "ok"
        assert status["connections"]["satellites"]["open"] >= 1, status["connections"]
        metrics = urllib.request.urlopen(f"http://{f.metrics}/metrics", timeout=5).read()
        assert b'vggvox_source_state{source="hall",state="running"} 1.0' in metrics
        proxy.cut()
        events(f, sub, lambda ev: ev["source"] == "hall" and ev.get("state") == "lost", 5)
        time.sleep(1.5)
        proxy.restore()
        back = time.monotonic()
        events(f, sub, lambda ev: ev["source"] == "hall" and ev["type"] == "turn", 6)
        resumed = time.monotonic() - back
        link = wait_for(lambda: (s := sources(f)["hall"]["satellite"])["lost_samples"]
                        and s["reported_lost"] == s["lost_samples"] and s["cuts"] and s, 5,
                        "both ends never agreed on the loss")
        # Down ~3 s (1 s to notice it, 1.5 s cut, 0.5 s to reconnect), 1 s of it held.
        assert 1.0 <= link["lost_s"] <= 5.0 and link["cuts"] == 1, link
        assert sources(f)["hall"]["state"] == "running"
        assert resumed < 4.0
        # Killed, it says no bye: it leaves status once silent for satellites.forget_s.
        sat.kill()
        out = sat.communicate(timeout=5)[0].decode(errors="replace")
        killed = time.monotonic()
        wait_for(lambda: "hall" not in sources(f), FORGET_S + 3,
                 "a satellite gone without a word stayed in status")
        assert time.monotonic() - killed > FORGET_S - 1
    finally:
        sub.close()
        stop_process(sat)
        proxy.close()
    assert "link down" in out and "of audio lost" in out, out
