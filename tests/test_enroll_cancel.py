"""Enrollment replies and cancelling an enrollment (issue 20): a real daemon, real
ZeroMQ clients that do not wait for their replies, real speech.

- an append's reply says what this request added (``added``, ``speech_s``) and the
  speaker's totals (``embeddings``, ``speaker_s``);
- ``cancel`` with an enrollment's ``request`` id: ``cancelled`` (queued, running or
  recording: nothing stored, its reply an error coded ``cancelled``), ``done`` (with
  its action and speaker), ``unknown``; racing a store, never both;
- a live recording's limit is named by its key, at the limit and past it;
- a CURVE reader may not cancel.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from daemon_proc import DaemonProcess
from floods import dealer
from speakers_fixture import Conversation, conversation

from vggvox.audio import load_audio, to_int16
from vggvox_client import live
from vggvox_client.connection import ClientError

MAX_BYTES = 16 * 1024 * 1024


@pytest.fixture
def convo(tmp_path: Path) -> Conversation:
    return conversation(tmp_path)


@pytest.fixture
def daemon(tmp_path: Path):
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text("enroll: {max_audio_s: 400.0}\n")  # an enrollment that takes seconds
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    yield d
    d.stop()


def send(sock: zmq.Socket, op: str, **fields: Any) -> None:
    """A request whose reply is read later (``reply``)."""
    sock.send_multipart([b"", msgpack.packb({"op": op, **fields})])


def reply(sock: zmq.Socket, timeout: float) -> dict | None:
    if not sock.poll(int(timeout * 1000)):
        return None
    return msgpack.unpackb(sock.recv_multipart()[-1])


def clips(convo: Conversation, seconds: float, pieces: int) -> list[bytes]:
    """``seconds`` of one speaker's speech in ``pieces`` clips, as request PCM."""
    x = np.concatenate([load_audio(p) for p in next(iter(convo.enroll.values()))])
    x = np.tile(x, int(seconds * 16000 / len(x)) + 1)[: int(seconds * 16000)]
    return [to_int16(c).tobytes() for c in np.array_split(x, pieces)]


def test_an_append_says_what_it_added_and_the_speakers_total(daemon: DaemonProcess,
                                                             convo: Conversation) -> None:
    files = next(iter(convo.enroll.values()))
    first = live.enroll(daemon.conn, "ann", files[:1], None, False, MAX_BYTES)
    again = live.enroll(daemon.conn, "ann", files[1:], None, False, MAX_BYTES)
    listed = daemon.conn.request("list")["speakers"][0]
    assert first["action"] == "added" and first["added"] == first["embeddings"] == 1
    assert first["speaker_s"] == first["speech_s"]
    assert again["action"] == "appended" and again["added"] == len(files) - 1
    assert again["embeddings"] == len(files) == listed["embeddings"]
    assert again["speaker_s"] == pytest.approx(first["speech_s"] + again["speech_s"], abs=0.01)
    assert again["speaker_s"] == pytest.approx(listed["seconds"], abs=0.01)


def test_cancel_a_queued_and_a_running_enrollment_and_ask_after_a_done_one(
        daemon: DaemonProcess, convo: Conversation) -> None:
    """A long enrollment runs (400 s in 40 clips), a short one waits behind it: both
    cancelled, both answered `cancelled` at once, neither stored. One let through is
    `done`, with its action; an id never seen is `unknown`."""
    a, b = dealer(daemon.conn.control), dealer(daemon.conn.control)
    try:
        send(a, "enroll", name="long", audio=clips(convo, 400, 40), request="req-long-1")
        time.sleep(0.3)  # the long one is being embedded (for about 3 s)...
        send(b, "enroll", name="queued", audio=clips(convo, 8, 2), request="req-queued-1")
        time.sleep(0.3)  # ...and the short one waits
        t0 = time.monotonic()
        assert daemon.conn.request("cancel", request="req-queued-1") == {
            "ok": True, "request": "req-queued-1", "state": "cancelled"}
        assert daemon.conn.request("cancel", request="req-long-1")["state"] == "cancelled"
        long, queued = reply(a, 10), reply(b, 10)
        took = time.monotonic() - t0
        assert long is not None and long["code"] == "cancelled", long
        assert long["error"] == ("enrollment of 'long' cancelled (request req-long-1): "
                                 "nothing was stored")
        assert queued is not None and queued["code"] == "cancelled", queued
        print(f"both cancelled and answered in {took:.2f} s")
        assert took < 1.5, f"the running one stops between clips, not after them: {took:.1f} s"
        send(a, "enroll", name="kept", audio=clips(convo, 8, 2), request="req-kept-1")
        assert reply(a, 30)["ok"]
    finally:
        a.close()
        b.close()
    assert daemon.conn.request("cancel", request="req-kept-1") == {
        "ok": True, "request": "req-kept-1", "state": "done", "action": "added",
        "speaker": "kept"}
    assert daemon.conn.request("cancel", request="never-seen")["state"] == "unknown"
    assert daemon.conn.request("cancel", request="req-long-1")["state"] == "cancelled"
    assert [s["name"] for s in daemon.conn.request("list")["speakers"]] == ["kept"]
    for bad in ("short", "x" * 65, "tab\there!"):
        with pytest.raises(ClientError, match="'request' must be 8 to 64 printable"):
            daemon.conn.request("cancel", request=bad)


def test_a_cancel_racing_the_store_is_cancelled_or_done_never_both(
        daemon: DaemonProcess, convo: Conversation) -> None:
    """20 enrollments, each cancelled after a random delay, some before their store
    write, some after: `done` exactly for those stored, `cancelled` for the rest."""
    rng = random.Random(20)
    sock = dealer(daemon.conn.control)
    audio = clips(convo, 4, 1)
    states: dict[str, str] = {}
    replies: dict[str, dict] = {}
    try:
        for i in range(20):
            rid = f"race-{i:04d}"
            send(sock, "enroll", name=f"race{i}", audio=audio, request=rid)
            time.sleep(rng.uniform(0, 0.04))
            states[f"race{i}"] = daemon.conn.request("cancel", request=rid)["state"]
            answer = reply(sock, 30)
            assert answer is not None
            replies[f"race{i}"] = answer
    finally:
        sock.close()
    stored = {s["name"] for s in daemon.conn.request("list")["speakers"]}
    done = {n for n, s in states.items() if s == "done"}
    print(f"{len(done)} done, {len(states) - len(done)} cancelled")
    assert set(states.values()) <= {"done", "cancelled"}
    assert done == stored == {n for n, r in replies.items() if r.get("ok")}
    assert all(r.get("code") == "cancelled" for n, r in replies.items() if n not in done)


def test_a_live_recording_at_its_limit_is_cancelled_and_past_it_is_refused_by_key(
        tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, source="stdin").start()
    sock = dealer(d.conn.control)
    try:
        assert d.proc is not None and d.proc.stdin is not None
        d.proc.stdin.write(b"\0" * 32000)  # the source runs: 1 s of silence
        d.proc.stdin.flush()
        deadline = time.monotonic() + 10
        while d.conn.request("status")["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(ClientError) as e:
            d.conn.request("enroll", name="dan", live=60.5)
        assert str(e.value).endswith("'live' must be at most 60 s (enroll.max_live_s), "
                                     "got 60.5")
        send(sock, "enroll", name="dan", live=60.0, request="live-dan-1")  # at the limit
        time.sleep(0.3)
        with pytest.raises(ClientError, match="busy: a live enrollment is already recording"):
            d.conn.request("enroll", name="eve", live=5.0)
        assert d.conn.request("cancel", request="live-dan-1")["state"] == "cancelled"
        answer = reply(sock, 5)
        assert answer is not None and answer["code"] == "cancelled", answer
        assert "nothing was stored" in answer["error"]
        # The cancelled recording no longer holds the source: another one may begin.
        send(sock, "enroll", name="eve", live=1.0, request="live-eve-1")
        time.sleep(0.3)
        assert d.conn.request("cancel", request="live-eve-1")["state"] == "cancelled"
        assert (reply(sock, 5) or {}).get("code") == "cancelled"
        d.proc.stdin.write(b"\0" * 64000)  # more audio: a cancelled tap takes none of it
        d.proc.stdin.flush()
        assert reply(sock, 1.0) is None, "one answer per request"
    finally:
        sock.close()
        code, _ = d.stop()
    assert code == 0


def test_a_curve_reader_may_not_cancel(tmp_path: Path) -> None:
    """`cancel` is an admin's request, as enroll is: a reader's key is refused."""
    from vggvoxd.config import SecuritySettings
    from vggvoxd.curve import Curve, keygen

    for role in ("admins", "readers"):
        (tmp_path / role).mkdir()
    keygen(tmp_path, "server")
    admin, _ = keygen(tmp_path / "admins", "admin")
    reader, _ = keygen(tmp_path / "readers", "reader")
    curve = Curve(SecuritySettings(server_key=str(tmp_path / "server.key_secret"),
                                   admins=str(tmp_path / "admins"),
                                   readers=str(tmp_path / "readers")))
    keys = {p: zmq.auth.load_certificate(p)[0].decode() for p in (admin, reader)}
    assert curve.allows(keys[admin], "cancel") is None
    assert curve.allows(keys[reader], "status") is None
    assert "'cancel' needs an admin key" in (curve.allows(keys[reader], "cancel") or "")
