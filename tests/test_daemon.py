"""The real daemon in a subprocess: enrollment, replay, control errors, signals, sources."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from daemon_proc import DaemonProcess
from floods import flood
from speakers_fixture import Conversation, score_events
from test_watchdog import NotifySocket

from conftest import write_wav
from vggvox.audio import load_audio, to_int16
from vggvox.protocol.pcm import to_pcm
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

MAX_BYTES = 16 * 1024 * 1024


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def refusing_daemon(tmp_path_factory: pytest.TempPathFactory):
    """One daemon for every malformed request: each is refused before it changes
    anything, and each test still asks it for its status after its own request."""
    d = DaemonProcess(tmp_path_factory.mktemp("malformed")).start()
    yield d
    d.stop()


def enroll_both(d: DaemonProcess, convo: Conversation) -> None:
    for name, files in convo.enroll.items():
        reply = enroll(d.conn, name, files, None, False, MAX_BYTES)
        assert reply["speaker"] == name and reply["speech_s"] >= 3.0


def test_enroll_replay_identify_remove(daemon: DaemonProcess, convo: Conversation) -> None:
    enroll_both(daemon, convo)
    assert [s["name"] for s in daemon.conn.request("list")["speakers"]] == sorted(convo.enroll)
    events = replay_one(daemon.conn, convo.stream, realtime=False, as_json=True,
                        timeout=60)
    good, total = score_events(events, convo.turns)
    assert total >= 10 and good / total >= 0.9, (good, total)
    starts = [e["t_start"] for e in events if e["type"] == "speech.start"]
    assert starts and all(any(s - 0.3 <= t <= e for s, e, _ in convo.turns) for t in starts)
    sub = daemon.conn.subscribe(["enrollment"])
    time.sleep(0.3)
    name = sorted(convo.enroll)[0]
    daemon.conn.request("remove", name=name)
    ev = daemon.conn.receive(sub, 5)
    assert ev and ev["action"] == "removed" and ev["speaker"] == name
    with pytest.raises(ClientError, match="no speaker named"):
        daemon.conn.request("remove", name=name)
    sub.close()


def test_voiceprints_take_effect_without_restart(daemon: DaemonProcess,
                                                 convo: Conversation) -> None:
    first, second = sorted(convo.enroll)
    enroll(daemon.conn, first, convo.enroll[first], None, False, MAX_BYTES)
    before = replay_one(daemon.conn, convo.stream, False, True, timeout=60)
    named = {e["speaker"] for e in before if e["type"] == "speaker"}
    assert second not in named
    enroll(daemon.conn, second, convo.enroll[second], None, False, MAX_BYTES)
    after = replay_one(daemon.conn, convo.stream, False, True, timeout=60)
    good, total = score_events(after, convo.turns)
    assert good / total >= 0.9


def test_enrollment_refuses_too_little_speech(daemon: DaemonProcess, tmp_path: Path,
                                              convo: Conversation) -> None:
    clip = load_audio(next(iter(convo.enroll.values()))[0])[:16000]
    short = write_wav(tmp_path / "short.wav", clip)
    with pytest.raises(ClientError, match=r"too little speech .* need 3.0 s"):
        enroll(daemon.conn, "shorty", [short], None, False, MAX_BYTES)
    silent = write_wav(tmp_path / "silent.wav", np.full(64000, 1e-3, dtype=np.float32))
    with pytest.raises(ClientError, match="too little speech"):
        enroll(daemon.conn, "quiet", [silent], None, False, MAX_BYTES)
    assert daemon.conn.request("list")["speakers"] == []


def raw_request(endpoint: str, payload: bytes, timeout: float = 3.0) -> dict | None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sock.send(payload)
        if not sock.poll(int(timeout * 1000)):
            return None
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\x00\xffgarbage bytes", "not a valid msgpack"),
        (msgpack.packb(["op", "list"]), "must be a msgpack map"),
        (msgpack.packb({"op": "enroll", "name": 42, "audio": []}), "field 'name' must be"),
        (msgpack.packb({"op": "enroll", "name": "x", "audio": [b"\x01\x02\x03"]}), "odd number"),
        (msgpack.packb({"op": "enroll", "name": "x", "audio": "wav"}), "field 'audio' must be"),
        (msgpack.packb({"op": "enroll", "name": "x", "live": 1e9}),
         "'live' must be at most 60 s (enroll.max_live_s)"),
        (msgpack.packb({"op": "enroll", "name": "x", "live": float("nan")}),
         "'live' must be a positive number of seconds"),
        (msgpack.packb({"op": "cancel", "request": 7}), "'request' must be 8 to 64"),
        (msgpack.packb({"op": "replay", "session": "", "audio": b""}), "'session' must be"),
        (msgpack.packb({"op": "shutdown"}), "unknown op"),
        (msgpack.packb({"op": "list", "pad": "x" * 100_000}), "not a valid msgpack"),
    ],
)
def test_malformed_requests_get_errors(refusing_daemon: DaemonProcess, payload: bytes,
                                      error: str) -> None:
    reply = raw_request(refusing_daemon.conn.control, payload)
    assert reply is not None and reply["ok"] is False and error in reply["error"]
    assert refusing_daemon.conn.request("status")["ok"]


def test_oversized_request_is_dropped_and_daemon_stays_up(daemon: DaemonProcess) -> None:
    huge = msgpack.packb({"op": "enroll", "name": "x", "audio": [b"\0" * (MAX_BYTES + 16)]})
    assert raw_request(daemon.conn.control, huge, timeout=2) is None  # ZeroMQ refused it
    assert daemon.conn.request("status")["ok"]


def test_status_names_the_node_its_events_carry(daemon: DaemonProcess) -> None:
    from vggvoxd.nodename import host_node

    assert daemon.conn.request("status")["node"] == host_node()  # node: null, the default


def test_subscriber_that_never_reads(daemon: DaemonProcess, convo: Conversation) -> None:
    enroll_both(daemon, convo)
    ctx = zmq.Context.instance()
    lazy = ctx.socket(zmq.SUB)
    lazy.setsockopt(zmq.RCVHWM, 1)
    lazy.setsockopt(zmq.RCVBUF, 4096)
    lazy.setsockopt(zmq.SUBSCRIBE, b"")
    lazy.connect(daemon.conn.events)
    try:
        for _ in range(3):  # the lazy subscriber never reads a single message
            events = replay_one(daemon.conn, convo.stream, False, True, timeout=60)
            good, total = score_events(events, convo.turns)
            assert total >= 10 and good / total >= 0.9
        status = daemon.conn.request("status")
        assert status["dropped_samples"] == 0 and status["dropped_windows"] == 0
        assert status["dropped_events"] == 0  # the publisher's own queue kept up
        embedder = status["stages"]["embedder"]
        assert embedder["state"] == "ok" and embedder["failures"] == 0
    finally:
        lazy.close()


def test_sigterm_exits_cleanly_within_two_seconds(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).start()
    code, took = d.stop()
    assert code == 0 and took < 2.0, d.output()


def test_sigterm_during_enrollment_keeps_the_store_intact(tmp_path: Path,
                                                          convo: Conversation) -> None:
    d = DaemonProcess(tmp_path).start()
    first, second = sorted(convo.enroll)
    enroll(d.conn, first, convo.enroll[first], None, False, MAX_BYTES)
    many = convo.enroll[second] * 20  # a long enrollment, to be interrupted
    clips = [to_pcm(load_audio(f)) for f in many]

    def enroll_long() -> None:
        try:
            d.conn.request("enroll", timeout=5, name=second, audio=clips)
        except ClientError:
            pass  # the daemon may stop before it answers

    t = threading.Thread(target=enroll_long)
    t.start()
    time.sleep(1.0)
    code, took = d.stop()
    t.join(timeout=10)
    assert code == 0 and took < 2.5, d.output()
    with sqlite3.connect(d.store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(db.execute("SELECT s.name, COUNT(e.id) FROM speakers s "
                               "LEFT JOIN embeddings e ON e.speaker = s.name GROUP BY s.name"))
    assert rows[first] == len(convo.enroll[first])
    assert rows.get(second, len(many)) == len(many)  # all of it or none of it


def test_sighup_reloads_voiceprints(daemon: DaemonProcess, convo: Conversation) -> None:
    from vggvox.embedder import Embedder
    from vggvox.modelcard import DEFAULT_MODEL
    from vggvox.store import VoiceprintStore

    embedder = Embedder.from_card(DEFAULT_MODEL)  # the daemon's: another model's are not used
    name, files = next(iter(convo.enroll.items()))
    emb = np.stack([embedder.embed(load_audio(f)) for f in files])
    VoiceprintStore(daemon.store).enroll(name, emb, embedder.tag, [str(f) for f in files],
                                         [1.0] * len(files))  # written behind its back
    assert daemon.conn.request("status")["speakers"] == 0
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while daemon.conn.request("status")["speakers"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.conn.request("status")["speakers"] == 1


def test_stdin_source(tmp_path: Path, convo: Conversation) -> None:
    d = DaemonProcess(tmp_path, source="stdin").start()
    try:
        enroll_both(d, convo)
        sub = d.conn.subscribe(["speaker", "speech.start"])
        time.sleep(0.3)
        pcm = to_int16(load_audio(convo.stream)).tobytes()
        assert d.proc and d.proc.stdin
        d.proc.stdin.write(pcm)
        d.proc.stdin.flush()
        events = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(events) < 20:
            ev = d.conn.receive(sub, 0.5)
            if ev:
                events.append(ev)
        assert {e["source"] for e in events} == {"stdin"}
        good, total = score_events(events, convo.turns)
        assert total >= 10 and good / total >= 0.9
        sub.close()
    finally:
        d.stop()


def test_file_source_at_real_time_pace(tmp_path: Path, convo: Conversation) -> None:
    speech = load_audio(next(iter(convo.enroll.values()))[0])
    clip = write_wav(tmp_path / "two_seconds.wav", speech[: 2 * 16000])
    d = DaemonProcess(tmp_path, source=f"file:{clip}")
    sub = d.conn.subscribe()
    d.start()
    t0 = time.monotonic()
    events = []
    while time.monotonic() - t0 < 15:
        ev = d.conn.receive(sub, 0.5)
        if ev:
            events.append(ev)
            if ev["type"] == "status" and ev["state"] == "finished":
                break
    took = time.monotonic() - t0
    d.stop()
    assert any(e["type"] == "speaker" and e["speaker"] is None for e in events)  # none enrolled
    assert events[-1]["state"] == "finished" and took >= 0.8 * len(load_audio(clip)) / 16000 - 1
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)


def test_bad_config_stops_startup_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("vad:\n  aggressiveness: 9\n")
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)])
    with pytest.raises(RuntimeError, match=r"'vad.aggressiveness' must be 0..3"):
        d.start(timeout=15)
    assert d.proc and d.proc.returncode == 2


def test_daemon_notifies_systemd_once_audio_flows(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    d = DaemonProcess(tmp_path, source="stdin",
                      env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}).start()
    try:
        messages = notify.drain(0.5)
        assert not any("READY=1" in m for m in messages)  # model loaded, but no audio yet
        assert d.proc and d.proc.stdin
        for _ in range(12):  # 1.2 s of (silent) audio in 100 ms blocks
            d.proc.stdin.write(b"\0" * 3200)
            d.proc.stdin.flush()
            time.sleep(0.1)
        messages += notify.drain(0.5)
        assert any(m.startswith("READY=1") for m in messages), messages
        assert messages.count("WATCHDOG=1") >= 3
        code, _ = d.stop()
        messages += notify.drain(0.5)
        assert code == 0 and "STOPPING=1" in messages
    finally:
        d.stop()
        notify.sock.close()


def comparable(events: list[dict]) -> list[tuple]:
    """What must not depend on the pace: everything but wall times, seq and source."""
    skip = {"time", "seq", "captured", "source"}
    return [tuple(sorted((k, str(v)) for k, v in e.items() if k not in skip))
            for e in events if e["type"] in ("speaker", "turn")]


def test_fast_replay_is_lossless_and_equals_realtime(tmp_path: Path, convo: Conversation) -> None:
    # Buffers far smaller than the file: a 5 s ring buffer and room for 2 windows in
    # each queue, against a 16.6 s conversation sent as fast as the daemon takes it.
    cfg = tmp_path / "small.yaml"
    cfg.write_text("audio: {buffer_s: 5.0}\nwindow: {queue: 2, max_batch: 2}\n")
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    try:
        enroll_both(d, convo)
        seconds = len(load_audio(convo.stream)) / 16000
        t0 = time.monotonic()
        fast = replay_one(d.conn, convo.stream, realtime=False, as_json=True, timeout=60)
        fast_s = time.monotonic() - t0
        t0 = time.monotonic()
        paced = replay_one(d.conn, convo.stream, realtime=True, as_json=True, timeout=60)
        paced_s = time.monotonic() - t0
        status = d.conn.request("status")
    finally:
        d.stop()
    assert fast_s < seconds, "fast replay is not faster than real time"
    assert seconds <= paced_s < seconds + 10, "a real-time replay returns once it is done"
    assert comparable(fast) == comparable(paced)
    turns = [e for e in fast if e["type"] == "turn" and e["final"]]
    assert len(turns) >= 4 and {e["speaker"] for e in turns} == set(convo.enroll)
    windows = [e for e in fast if e["type"] == "speaker"]
    # A window every hop of speech, from 1 s into each segment: none may be missing.
    speech = sum(e["t_end"] - e["t_start"] for e in fast if e["type"] == "speech.end")
    assert len(windows) >= (speech - 4 * 1.0) / 0.5 - 4
    assert status["dropped_windows"] == 0 and status["dropped_samples"] == 0


def test_an_unknown_voice_is_named_through_the_client(daemon: DaemonProcess, tmp_path: Path,
                                                       speech_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Strangers get unknown-N labels on a stream; `vggvox-client name` enrolls one; the
    named event lists its past turns and its next turn on that stream carries the name."""
    from speakers_fixture import joined, labels_within, vctk

    from vggvox.protocol.events import replay_source
    from vggvox_client import cli

    files = [write_wav(tmp_path / f"p225_{u}.wav", vctk(speech_dir, "p225", u))
             for u in ("016", "020", "022")]
    enroll(daemon.conn, "p225", files, None, False, MAX_BYTES)
    part1, truth1 = joined([("p225", vctk(speech_dir, "p225", "003")),
                            ("p226", vctk(speech_dir, "p226", "003")),
                            ("p227", vctk(speech_dir, "p227", "003")),
                            ("p226", vctk(speech_dir, "p226", "011"))])
    part2, truth2 = joined([("p226", vctk(speech_dir, "p226", "016"))],
                           offset=len(part1) / 16000)
    sub = daemon.conn.subscribe(["turn", "named"])
    time.sleep(0.3)
    SESSION = "a" * 31 + "1"  # the session's secret token

    def send(x: np.ndarray, final: bool) -> None:
        """One replay session, kept open between the parts (lossless: the daemon waits)."""
        pcm, deadline = to_int16(x), time.monotonic() + 60
        while len(pcm) and time.monotonic() < deadline:
            reply = daemon.conn.request("replay", session=SESSION, label="naming",
                                        audio=pcm[:16000].tobytes(),
                                        final=final and len(pcm) <= 16000)
            pcm = pcm[reply["accepted"]:]
            if not reply["accepted"]:
                time.sleep(0.05)

    def finals_until(end: float) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ev = daemon.conn.receive(sub, 0.5)
            if ev and ev["type"] == "turn" and ev["final"]:
                got.append(ev)
                if ev["t_end"] >= end - 0.5:
                    return got
        raise AssertionError(f"no final turn reached {end} s: {got}")

    send(part1, final=False)
    turns = finals_until(truth1[-1][2])
    labels = {who: labels_within(turns, s, e) for who, s, e in truth1}
    assert labels["p225"] == {"p225"}
    (stranger,) = labels["p226"]
    assert stranger and stranger.startswith("unknown-")
    assert len(labels["p227"]) == 1 and labels["p227"] != {stranger}
    assert all(t["confidence"] > 0.5 for t in turns if t["windows"] >= 4)

    argv = ["--control", daemon.conn.control, "--events", daemon.conn.events, "--timeout", "60"]
    assert cli.main([*argv, "name", stranger, "bob"]) == 0
    assert f"{stranger} on {replay_source(SESSION, 'naming')} is now bob" \
        in capsys.readouterr().out
    named = daemon.conn.receive(sub, 5)
    assert named and named["type"] == "named", named
    assert named["unknown"] == stranger and named["speaker"] == "bob"
    assert sorted(named["turns"]) == sorted(t["turn"] for t in turns if t["unknown"] == stranger)
    assert "bob" in [s["name"] for s in daemon.conn.request("list")["speakers"]]
    # A label that is no cluster is a one-line error, and the daemon stays up.
    assert cli.main([*argv, "name", "unknown-99", "carol"]) == 2
    assert "no unknown voice 'unknown-99'" in capsys.readouterr().err

    send(part2, final=True)
    later = finals_until(truth2[-1][2])
    assert labels_within(later, truth2[0][1], truth2[0][2]) == {"bob"}
    sub.close()


def test_status_and_list_stay_quick_during_a_long_enrollment(
        daemon: DaemonProcess, tmp_path: Path, convo: Conversation) -> None:
    """Enrollment embeds in the worker, not the control thread: other requests answer
    within 100 ms meanwhile (issue 8 measured 7.2 s of blocking before)."""
    from vggvox_client.connection import Connection

    voice = load_audio(convo.enroll[sorted(convo.enroll)[0]][0])
    # Read and packed beforehand, so that this process is idle while it measures.
    clip = to_pcm(np.tile(voice, int(110 * 16000 / len(voice))))
    reply: dict = {}

    def enroll() -> None:
        other = Connection(daemon.conn.control, daemon.conn.events, 120)
        reply.update(other.request("enroll", timeout=120, name="long", audio=[clip]))

    t = threading.Thread(target=enroll)
    t.start()
    time.sleep(0.05)  # measured from the start: the features of the long clip come first
    waits = []
    while t.is_alive() and len(waits) < 200:
        t0 = time.perf_counter()
        assert daemon.conn.request("status" if len(waits) % 2 else "list", timeout=5)["ok"]
        waits.append(time.perf_counter() - t0)
        time.sleep(0.02)
    busy = t.is_alive()
    t.join(timeout=120)
    assert busy or len(waits) >= 5, "the enrollment ended before it could be measured"
    assert reply.get("speaker") == "long"
    assert max(waits) < 0.1, f"slowest reply {max(waits):.3f} s of {len(waits)}"


def test_one_live_enrollment_at_a_time_and_an_answer_when_the_source_ends(
        tmp_path: Path, convo: Conversation) -> None:
    from vggvox_client.connection import Connection

    d = DaemonProcess(tmp_path, source="stdin").start()
    try:
        assert d.proc and d.proc.stdin
        d.proc.stdin.write(to_int16(load_audio(convo.stream)[:16000]).tobytes())
        d.proc.stdin.flush()
        deadline = time.monotonic() + 10
        while d.conn.request("status")["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        first: dict = {}

        def record() -> None:
            other = Connection(d.conn.control, d.conn.events, 30)
            try:
                other.request("enroll", timeout=30, name="first", live=20.0)
            except ClientError as err:
                first["error"] = str(err)

        t = threading.Thread(target=record)
        t.start()
        time.sleep(0.5)  # the first recording is pending: 20 s, and no audio comes
        with pytest.raises(ClientError, match="busy: a live enrollment is already recording"):
            d.conn.request("enroll", name="second", live=5.0)
        d.proc.stdin.close()  # the source ends before the recording is complete
        t.join(timeout=15)
        assert not t.is_alive() and "abandoned" in first.get("error", ""), first
        assert "nothing was stored" in first["error"]
    finally:
        d.stop()


def test_one_daemon_per_endpoint_and_no_stale_sockets(tmp_path: Path) -> None:
    """Issue 8: a second daemon on the same ipc endpoints refuses to start, naming the
    first one's pid; after a SIGKILL the stale socket is replaced; a clean exit removes
    the socket files."""
    import subprocess

    first = DaemonProcess(tmp_path).start()
    sock = Path(first.conn.control[len("ipc://"):])
    try:
        second = subprocess.run(first.argv, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        assert second.returncode == 1
        assert f"another vggvoxd (pid {first.proc.pid}) already serves" in second.stderr \
            + second.stdout, second.stderr[-2000:]
        assert "INFO vggvoxd.daemon: model" not in second.stdout, "it refused before loading"
        assert first.conn.request("status")["ok"], "the first one is still reachable"
        first.proc.kill()  # no clean exit: its socket and lock files stay behind
        first.proc.wait(timeout=10)
        assert sock.exists()
        third = DaemonProcess(tmp_path).start()
        assert third.conn.request("status")["ok"]
        code, _ = third.stop()
        assert code == 0
        assert not sock.exists() and not sock.with_name(sock.name + ".lock").exists()
    finally:
        first.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_hostile_requests_cannot_balloon_memory(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Issue 8: requests of millions of tiny maps, sent back to back without waiting,
    and oversized enrollments: the daemon refuses them and stays under 400 MB."""
    # 15.7 million empty maps in arrays of arrays: just under the 16 MiB request limit.
    inner = b"\xdc\x04\x00" + b"\x80" * 1024
    middle = b"\xdc\x00\x0f" + inner * 15
    bomb = b"\xdc\x04\x00" + middle * 1024
    assert len(bomb) < MAX_BYTES
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 10000)
    sock.connect(daemon.conn.control)
    try:
        for _ in range(12):  # no waiting for replies: ZeroMQ queues what it may
            sock.send_multipart([b"", bomb])
        replies = []
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        deadline = time.monotonic() + 60
        while len(replies) < 12 and time.monotonic() < deadline:
            if poller.poll(500):
                replies.append(msgpack.unpackb(sock.recv_multipart()[-1]))
    finally:
        sock.close()
    assert len(replies) == 12 and all(not r["ok"] for r in replies)
    assert "more than 4096 maps and arrays" in replies[0]["error"]
    noise = np.random.default_rng(0).normal(0, 0.1, 121 * 16000).astype(np.float32)
    too_long = write_wav(tmp_path / "long.wav", noise)
    with pytest.raises(ClientError, match=r"at most 120 s per enrollment \(enroll.max_audio_s\)"):
        enroll(daemon.conn, "long", [too_long], None, False, MAX_BYTES)
    assert daemon.conn.request("status")["ok"]
    assert daemon.proc is not None
    peak = peak_rss_mb(daemon.proc.pid)
    assert peak <= 400, f"peak RSS {peak:.0f} MB"


def test_a_connection_flood_does_not_stop_the_daemon(tmp_path: Path) -> None:
    """Issue 8: 3,000 connections opened and held, then closed, against a daemon started
    with a soft limit of 1,024 open files (it raises its own limit), which answers
    throughout."""
    d = DaemonProcess(tmp_path)
    d.argv = ["bash", "-c", 'ulimit -Sn 1024 && exec "$0" "$@"', *d.argv]
    d.start()
    path = d.conn.control[len("ipc://"):]
    held: list[socket.socket] = []
    try:
        flood(path, held, most=3000, seconds=60)
        assert len(held) == 3000
        time.sleep(0.5)
        assert d.conn.request("status", timeout=10)["ok"]
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.5)
        assert d.conn.request("status", timeout=10)["ok"]
        assert d.proc is not None and d.proc.poll() is None
        limits = Path(f"/proc/{d.proc.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines()
                    if line.startswith("Max open files"))
        assert int(soft) > 3000, limits
    finally:
        for s in held:
            s.close()
        d.stop()


def test_sigterm_during_one_long_clip_exits_0_within_two_seconds(
        tmp_path: Path, convo: Conversation) -> None:
    """Issue 8: SIGTERM while one long clip is inside ONNX (it cannot stop between
    clips) used to abort the process now and then; it must exit 0 every time."""
    voice = load_audio(convo.enroll[sorted(convo.enroll)[0]][0])
    clip = to_pcm(np.tile(voice, int(110 * 16000 / len(voice))))
    for run in range(3):
        (tmp_path / f"run{run}").mkdir()
        d = DaemonProcess(tmp_path / f"run{run}").start()

        def enroll_long(d: DaemonProcess = d) -> None:
            try:
                d.conn.request("enroll", timeout=5, name="long", audio=[clip])
            except ClientError:
                pass  # the daemon stops before it answers

        t = threading.Thread(target=enroll_long)
        t.start()
        time.sleep(1.5)
        code, took = d.stop()
        t.join(timeout=10)
        assert code == 0 and took < 2.0, (run, code, took, d.output())
        with sqlite3.connect(d.store) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("path, why", [("/nonexistent.wav", "file not found"),
                                       ("junk.wav", "not readable as audio")])
def test_a_bad_file_source_is_one_line_and_exit_2(tmp_path: Path, path: str, why: str) -> None:
    """Issue 8: --source file:PATH that is missing or no audio: one line, exit 2, before
    the model is loaded."""
    import subprocess
    import sys

    (tmp_path / "junk.wav").write_text("not audio")
    target = path if path.startswith("/") else str(tmp_path / path)
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--source", f"file:{target}",
                          "--store", str(tmp_path / "v.db")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and why in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert "model" not in run.stdout and time.monotonic() - t0 < 10


def test_a_replay_session_belongs_to_whoever_holds_its_token(daemon: DaemonProcess) -> None:
    """Issue 8: events and status never show a session's token, only its hash; a short
    token is refused; another token is another session."""
    from vggvox.protocol.events import replay_source

    with pytest.raises(ClientError, match="'session' must be 32 to 128"):
        daemon.conn.request("replay", session="guessable", audio=b"")
    token = "f" * 32
    sub = daemon.conn.subscribe(["status"])
    time.sleep(0.3)
    daemon.conn.request("replay", session=token, label="mine", audio=bytes(3200), final=True)
    name = replay_source(token, "mine")
    assert token not in name and name.startswith("replay:mine-")
    deadline, done = time.monotonic() + 30, None
    while done is None and time.monotonic() < deadline:
        ev = daemon.conn.receive(sub, 0.5)
        if ev and ev["source"] == name and ev["state"] == "finished":
            done = ev
    sub.close()
    assert done is not None, "the replay's events carry the hashed name"
    status = daemon.conn.request("status")
    assert isinstance(status["replays"], int) and token not in str(status)
    # Knowing the public name gives nothing: it is not a token of any session.
    with pytest.raises(ClientError, match="'session' must be"):
        daemon.conn.request("replay", session=name.split("-")[-1], audio=b"")
