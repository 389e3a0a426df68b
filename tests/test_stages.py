"""The daemon's stages, each on its own: no devices, no sockets between threads."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from vggvox.audio import load_audio, to_int16
from vggvox.protocol.events import SpeechStartEvent
from vggvox.stream.ringbuffer import RingBuffer
from vggvox.stream.segmenter import Window
from vggvox.stream.vad import SpeechEnd, SpeechStart, VadFrameError, VadGate, speech_segments
from vggvox.stream.windows import WindowSpec, due_windows
from vggvoxd.executor import Flush, Job, StreamSink, WorkQueues
from vggvoxd.notify import Notifier, Watchdog

# ---------------------------------------------------------------- ring buffer


def test_ring_buffer_indexes_and_wraps() -> None:
    rb = RingBuffer(10)
    rb.write(np.arange(6, dtype=np.int16))
    assert rb.read() == (0, pytest.approx(np.arange(6)))
    rb.write(np.arange(6, 13, dtype=np.int16))  # wraps around
    start, x = rb.read()
    assert start == 6 and list(x) == list(range(6, 13))
    assert list(rb.get(3, 13)) == list(range(3, 13))
    assert rb.get(2, 5) is None  # overwritten
    assert rb.dropped == 0


def test_ring_buffer_drops_oldest_unread_and_counts() -> None:
    rb = RingBuffer(8)
    rb.write(np.arange(5, dtype=np.int16))
    rb.write(np.arange(5, 12, dtype=np.int16))  # reader never read: 4 samples lost
    assert rb.dropped == 4
    start, x = rb.read()
    assert start == 4 and list(x) == list(range(4, 12))
    rb.write(np.arange(100, dtype=np.int16))  # a block larger than the buffer
    assert rb.end == 112 and rb.get(104, 112) is not None and rb.dropped == 4 + 92


def test_ring_buffer_arrival_times() -> None:
    rb = RingBuffer(100)
    rb.write(np.zeros(10, dtype=np.int16))
    rb.write(np.zeros(10, dtype=np.int16))
    assert rb.arrival(5) <= rb.arrival(15)


# ---------------------------------------------------------------- VAD


def test_vad_on_real_speech_and_silence(fixtures_dir: Path) -> None:
    speech = to_int16(load_audio(fixtures_dir / "vctk-p225__p225_003.wav"))
    silence = np.zeros(16000, dtype=np.int16)
    x = np.concatenate([silence, speech, silence])
    segments = speech_segments(VadGate(), x)
    assert segments, "no speech found in real speech"
    # Nothing starts in the leading silence; the end may run on by webrtcvad's own
    # internal hangover (a few frames) into the trailing silence, never further.
    assert segments[0][0] >= 16000 and segments[-1][1] <= 16000 + len(speech) + 4800
    assert speech_segments(VadGate(), np.zeros(48000, dtype=np.int16)) == []


def test_vad_block_size_does_not_matter(fixtures_dir: Path) -> None:
    x = to_int16(load_audio(fixtures_dir / "ls-3005__3005-163389-0000.wav"))
    whole = VadGate()
    ref = whole.process(0, x) + whole.flush()
    gate = VadGate()
    got = []
    for i in range(0, len(x), 333):  # odd blocks: frames straddle them
        got += gate.process(i, x[i : i + 333])
    assert got + gate.flush() == ref
    assert isinstance(ref[0], SpeechStart) and isinstance(ref[-1], SpeechEnd)


def test_vad_bad_frame_sizes() -> None:
    with pytest.raises(VadFrameError, match="frame_ms"):
        VadGate(frame_ms=25)
    with pytest.raises(VadFrameError, match="480 samples"):
        VadGate().is_speech(np.zeros(100, dtype=np.int16))


# ---------------------------------------------------------------- windows

SPEC = WindowSpec(length=32000, hop=8000, min_speech=16000)


def test_no_window_before_min_speech() -> None:
    assert due_windows(SPEC, 1000, 1000 + 15999, None) == []
    assert due_windows(SPEC, 1000, 1000 + 16000, None) == [(1000, 17000)]


def test_windows_slide_by_hop_and_cap_length() -> None:
    w = due_windows(SPEC, 0, 40000, None)
    assert w == [(0, 16000), (0, 24000), (0, 32000), (8000, 40000)]
    assert due_windows(SPEC, 0, 47999, 40000) == []
    assert due_windows(SPEC, 0, 48000, 40000) == [(16000, 48000)]


def test_final_window_covers_the_tail() -> None:
    assert due_windows(SPEC, 0, 44000, 40000, final=True) == [(12000, 44000)]
    assert due_windows(SPEC, 0, 42000, 40000, final=True) == []  # under half a hop
    assert due_windows(SPEC, 0, 10000, None, final=True) == []  # too little speech
    assert due_windows(SPEC, 0, 20000, None, final=True) == [(0, 16000), (0, 20000)]


# ---------------------------------------------------------------- sd_notify


def test_notify_protocol_over_a_fake_socket(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = Notifier()
    assert n.enabled and n.watchdog_interval == 1.0
    n.ready("listening")
    n.ready("again")  # READY is sent once
    n.watchdog()
    n.watchdog()  # rate-limited: within the interval, no second ping
    n.stopping()
    got = [server.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=listening", "WATCHDOG=1", "STOPPING=1"]
    server.close()


def test_notify_abstract_address_and_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled and Notifier().send("READY=1") is False
    assert Notifier("@vggvox-test").address == "\0vggvox-test"


def test_the_watchdog_reads_the_stages_health_only_when_a_ping_is_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stream thread calls it per captured block: the stages' health is read when a
    ping is due (at most twice per watchdog period), not 50 times a second per source;
    never without systemd. An unhealthy daemon is not pinged, and is asked again."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    asked: list[bool] = []
    answer = [True]

    def healthy() -> bool:
        asked.append(answer[0])
        return answer[0]

    for _ in range(100):
        Watchdog(Notifier(), healthy)()
    assert asked == []
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.5)
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")  # a ping due every 30 s
    answer[0] = False
    watchdog = Watchdog(Notifier(str(path)), healthy)
    watchdog()
    watchdog()
    answer[0] = True
    for _ in range(100):
        watchdog()
    assert asked == [False, False, True], "asked while due, until one ping went out"
    assert server.recv(4096) == b"WATCHDOG=1"
    with pytest.raises(TimeoutError):
        server.recv(4096)
    server.close()


# ---------------------------------------------------------------- window queue


def sink(name: str = "s") -> StreamSink:
    """A stream as the executor and the queues see it, deciding nothing."""
    return StreamSink(name, lambda item, embedding: [], lambda event: None)


def job(i: int, stream: StreamSink) -> Job:
    return Job(stream, Window(i, i + 1, np.zeros(1, np.int16)))


def test_live_queue_drops_oldest_window_never_a_marker() -> None:
    q, mic, other = WorkQueues(live_size=3, finite_size=3), sink("mic"), sink("other")
    q.put_live(Job(mic, SpeechStart(0)))
    for i in range(5):
        q.put_live(job(i, mic))
    assert q.dropped == 2 and q.dropped_windows(mic) == 2 and q.dropped_windows(other) == 0
    got = q.take(10, 0.1)
    assert isinstance(got[0].item, SpeechStart)
    assert [j.item.start for j in got[1:]] == [2, 3, 4]


def test_finite_queue_waits_and_never_drops() -> None:
    q, replay = WorkQueues(live_size=2, finite_size=2), sink("replay")
    assert q.put_finite(job(0, replay)) and q.put_finite(Job(replay, Flush()))
    assert not q.put_finite(job(1, replay), timeout=0.05)  # full: the producer must wait
    assert q.dropped == 0 and len(q) == 2 and q.dropped_windows(replay) == 0
    q.close()
    assert not q.put_finite(job(1, replay), timeout=0.05)


def test_live_work_is_taken_before_finite_work() -> None:
    q, mic, replay = WorkQueues(8, 8), sink("mic"), sink("replay")
    for i in range(4):
        q.put_finite(job(i, replay))
    q.put_live(job(100, mic))
    batch = q.take(3, 0.1)
    assert batch[0].sink is mic and [j.sink for j in batch[1:]] == [replay, replay]


def test_ring_buffer_waiting_writer_loses_nothing() -> None:
    rb = RingBuffer(10)
    rb.write(np.arange(8, dtype=np.int16))
    got: list[np.ndarray] = []
    t = threading.Thread(target=lambda: rb.write(np.arange(8, 30, dtype=np.int16), wait=True))
    t.start()
    deadline = time.monotonic() + 5
    while sum(len(g) for g in got) < 30 and time.monotonic() < deadline:
        got.append(rb.read(timeout=0.05)[1])
    t.join(timeout=5)
    assert rb.dropped == 0 and list(np.concatenate(got)) == list(range(30))


def test_control_decoding_limits() -> None:
    from vggvoxd.control import ControlServer, RequestError

    server = ControlServer("inproc://x", {"list": lambda r, later: {"ok": True}}, 1024)
    assert server.decode(msgpack.packb({"op": "list"})) == {"op": "list"}
    for bad, msg in [(b"\xc1garbage", "not a valid msgpack"), (msgpack.packb([1, 2]), "map"),
                     (msgpack.packb({"op": 5}), "field 'op'"), (msgpack.packb({}), "missing"),
                     (msgpack.packb({"op": "format_disk"}), "unknown op"),
                     (msgpack.packb({"op": "list", "x": b"a" * 2048}), "not a valid msgpack")]:
        with pytest.raises(RequestError, match=msg):
            server.decode(bad)


def test_control_ops_table_is_exactly_the_protocols_ops() -> None:
    from vggvox.protocol.requests import REQUESTS, StatusRequest
    from vggvoxd.control import Op, ops_table

    def no_reply(req: object, later: object) -> None:
        return None

    ops = {name: Op(cls, no_reply) for name, cls in REQUESTS.items()}
    assert set(ops_table(*ops.values())) == set(REQUESTS)
    with pytest.raises(ValueError, match=r"no handler for \['status'\]"):
        ops_table(*(op for name, op in ops.items() if name != "status"))

    class FormatDisk(StatusRequest):
        op = "format_disk"

    with pytest.raises(ValueError, match=r"not in .*REQUESTS: \['format_disk'\]"):
        ops_table(*ops.values(), Op(FormatDisk, no_reply))
    with pytest.raises(ValueError, match="twice"):
        ops_table(*ops.values(), ops["list"])


# ---------------------------------------------------------------- a guarded stage


class FlakyRecognizer:
    """A real recognizer whose decider raises on the calls listed in ``fail_on``."""

    def __init__(self, recognizer: object, fail_on: set[int]) -> None:
        self.inner, self.fail_on, self.calls = recognizer, fail_on, 0

    def decide(self, item: object, embedding: object = None) -> list:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"injected fault on call {self.calls}")
        return self.inner.decide(item, embedding)  # type: ignore[attr-defined]


def run_executor(tmp: Path, fail_on: set[int], items: int) -> tuple[object, list, list[str]]:
    """The real executor, a real embedder and recognizer, one stream whose decider
    fails on some calls; ``items`` speech starts are queued, then we wait for them."""
    from vggvox.embedder import Embedder
    from vggvox.stream.recognizer import Recognizer
    from vggvox.voiceprints import VoiceprintSet
    from vggvoxd.executor import EmbedExecutor

    embedder = Embedder.from_card("campplus")
    vps = VoiceprintSet(embedder.card.embedding_size, embedder.tag)
    queues, events, fatal = WorkQueues(64, 64), [], []  # type: ignore[var-annotated]
    stream = StreamSink("test", FlakyRecognizer(Recognizer(embedder, vps), fail_on).decide,
                        events.append)
    ex = EmbedExecutor(embedder, vps, queues, 8, fatal.append)
    ex.start()
    try:
        for i in range(items):
            queues.put_finite(Job(stream, SpeechStart(i * 16000)))
            time.sleep(0.05)  # one item per batch, so each failure loses one
            if fatal:
                break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(events) + ex.lost_jobs < items \
                and not fatal:
            time.sleep(0.05)
    finally:
        ex.stop()
    return ex, events, fatal


def test_a_fault_in_the_embedder_stage_is_survived_and_counted(tmp_path: Path) -> None:
    ex, events, fatal = run_executor(tmp_path, fail_on={2}, items=5)
    assert not fatal and len(events) == 4, "the work after the fault was done"
    health = ex.health()  # type: ignore[attr-defined]
    assert health["state"] == "ok" and health["failures"] == 1 and health["lost_jobs"] == 1
    assert "injected fault on call 2" in health["last_error"]


def test_a_stage_that_keeps_failing_makes_the_daemon_exit(tmp_path: Path) -> None:
    # Work keeps coming (one item every 50 ms) while every batch fails.
    ex, _, fatal = run_executor(tmp_path, fail_on=set(range(1, 1000)), items=60)
    assert fatal and "failed 5 times in a row" in fatal[0]
    assert ex.health()["state"] == "failed" and not ex.healthy()  # type: ignore[attr-defined]


def test_the_publisher_counts_what_its_queue_drops() -> None:
    from vggvoxd.publisher import Publisher

    pub = Publisher("inproc://not-bound", backlog=3)  # not started: nothing drains it
    for i in range(5):
        pub.publish(SpeechStartEvent(source="s", t_start=i, t_end=i))
    assert pub.dropped == 2, "the two oldest went, and were counted"


def test_a_guard_retries_counts_and_gives_up() -> None:
    from vggvoxd.guard import Guard

    fatal: list[str] = []
    calls = {"n": 0}

    def step() -> bool:
        calls["n"] += 1
        if calls["n"] in (1, 2):
            raise ValueError("flaky")
        return calls["n"] < 4  # then ends normally

    g = Guard("test", fatal.append)
    g.run(step, threading.Event())
    assert calls["n"] == 4 and not fatal
    assert g.health()["state"] == "ok" and g.health()["failures"] == 2

    def broken() -> bool:
        raise RuntimeError("always")

    g = Guard("broken", fatal.append)
    g.run(broken, threading.Event())
    assert g.failed and fatal == ["broken failed 5 times in a row: RuntimeError: always"]


def test_the_publisher_loop_survives_an_event_that_cannot_be_sent(tmp_path: Path) -> None:
    """The socket threads run guarded too: a failing step is logged, counted and
    the loop goes on (a real PUB/SUB pair on an ipc socket)."""
    import zmq

    from vggvoxd.publisher import Publisher

    class Unsendable(SpeechStartEvent):
        def payload(self, seq: int) -> dict:  # type: ignore[override]
            raise ValueError("cannot encode this one")

    endpoint = f"ipc://{tmp_path}/events.sock"
    fatal: list[str] = []
    pub = Publisher(endpoint, on_fatal=fatal.append)
    pub.start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        got: list[list[bytes]] = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:  # until the subscription is in place
            pub.publish(Unsendable(source="s", t_start=0, t_end=0))
            pub.publish(SpeechStartEvent(source="s", t_start=1, t_end=1))
            if sub.poll(200):
                got.append(sub.recv_multipart())
        assert got and got[0][0] == b"speech.start", "good events still go out"
        health = pub.guard.health()
        assert health["failures"] >= 1 and "cannot encode this one" in health["last_error"]
        assert pub.dropped >= 1 and pub.alive() and not fatal
    finally:
        sub.close()
        pub.stop()
