"""Ctrl-C on ``vggvox-client enroll``: cancelled for sure, or said to have gone through.

The client's side; the daemon's ``cancel`` op is tested in test_enroll_cancel.py.

Issue 20: Ctrl-C exited 130 but the speaker was enrolled all the same, and
nothing said so. Now the client sends every enrollment with a request id and,
on Ctrl-C, ``cancel``s it and says what became of it. A real daemon, a real
client process, a real SIGINT: once while its 100 s enrollment waits behind
others (cancelled, and the store has no trace of it), and once after the daemon
stored it while the client was stopped (SIGSTOP) before reading the reply (it
says so, and how to undo it). Also the append's reply in words (issue 20's
"gives the new clip's seconds as if they were the speaker's").
"""

from __future__ import annotations

import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from daemon_proc import DaemonProcess
from speakers_fixture import conversation

from conftest import write_wav
from vggvox.audio import load_audio
from vggvox.protocol.pcm import to_pcm
from vggvox_client.enroll import enroll_summary, outcome

CLIENT = Path(sys.executable).parent / "vggvox-client"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Path]]:
    tmp = tmp_path_factory.mktemp("cancel")
    clips = conversation(tmp).enroll
    voice = load_audio(clips[sorted(clips)[0]][0])  # one voice, 100 s of it
    wav = write_wav(tmp / "long.wav", np.tile(voice, 100 * 16000 // len(voice) + 1)
                    [: 100 * 16000])
    d = DaemonProcess(tmp).start(timeout=60)
    yield d, wav
    d.stop()


def keep_busy(d: DaemonProcess, wav: Path, n: int) -> list[zmq.Socket]:
    """``n`` enrollments of ``wav`` sent at once (DEALER sockets, replies not awaited),
    so that the next one waits behind them in the daemon's enrollment worker."""
    pcm = to_pcm(load_audio(wav))
    socks = []
    for i in range(n):
        s: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(d.conn.control)
        s.send_multipart([b"", msgpack.packb({"op": "enroll", "name": f"busy{i}",
                                              "audio": [pcm]})])
        socks.append(s)
    return socks


def drain(socks: list[zmq.Socket], timeout: float = 60) -> None:
    """Wait for each busy enrollment's reply: then the worker has nothing left."""
    for s in socks:
        assert s.poll(int(timeout * 1000)), "a busy enrollment never answered"
        s.recv_multipart()
        s.close()


def start_enroll(d: DaemonProcess, name: str, wav: Path) -> subprocess.Popen[bytes]:
    """The client, until its request is on its way (its DEBUG line says so)."""
    p = subprocess.Popen([str(CLIENT), "enroll", name, str(wav), "--log-level", "DEBUG",
                          "--control", d.conn.control, "--events", d.conn.events],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stderr is not None
    seen, deadline = b"", time.monotonic() + 30
    while b"sending request" not in seen:
        assert time.monotonic() < deadline and p.poll() is None, seen.decode()
        if select.select([p.stderr], [], [], 0.2)[0]:
            seen += p.stderr.read1(4096)  # type: ignore[attr-defined]
    return p


def stored(d: DaemonProcess) -> set[str]:
    """The speakers in the store's file itself, not the daemon's memory."""
    with sqlite3.connect(f"file:{d.store}?mode=ro", uri=True) as db:
        return {n for (n,) in db.execute("SELECT name FROM speakers")}


def finish(p: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = p.communicate(timeout=30)
    return p.returncode, err.decode()


def test_ctrl_c_cancels_an_enrollment_under_way(setup: tuple[DaemonProcess, Path]) -> None:
    d, wav = setup
    busy = keep_busy(d, wav, 2)
    p = start_enroll(d, "eve", wav)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    code, err = finish(p)
    drain(busy)
    assert code == 130, err
    assert "vggvox-client: interrupted: cancelled: nothing was stored" in err, err
    assert "Traceback" not in err
    assert "eve" not in {s["name"] for s in d.conn.request("list")["speakers"]}
    assert "eve" not in stored(d) and {"busy0", "busy1"} <= stored(d)


def test_ctrl_c_after_it_went_through_says_so(setup: tuple[DaemonProcess, Path]) -> None:
    d, wav = setup
    busy = keep_busy(d, wav, 1)  # its reply cannot come before the client is stopped
    p = start_enroll(d, "dora", wav)
    time.sleep(0.5)  # the request leaves the client's socket
    p.send_signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 60
        while "dora" not in stored(d):
            assert time.monotonic() < deadline, "the enrollment was never stored"
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)  # delivered on SIGCONT: Ctrl-C after the store
    finally:
        p.send_signal(signal.SIGCONT)
    code, err = finish(p)
    drain(busy)
    assert code == 130, err
    assert ("vggvox-client: interrupted: the enrollment of dora had already gone through: "
            "dora is enrolled (vggvox-client remove dora undoes it)") in err, err
    assert "dora" in stored(d)


def test_cancel_answers_in_words() -> None:
    what = "the enrollment of bob"
    assert outcome({"state": "cancelled"}, what) == "cancelled: nothing was stored"
    assert "bob is enrolled (vggvox-client remove bob undoes it)" in outcome(
        {"state": "done", "action": "added", "speaker": "bob"}, what)
    assert "appended to bob's voiceprint" in outcome(
        {"state": "done", "action": "appended", "speaker": "bob"}, what)
    assert "cannot say whether the enrollment of bob went through" in outcome(
        {"state": "unknown"}, what)


def test_an_append_says_what_it_added_and_the_speakers_totals() -> None:
    reply = {"speaker": "alice", "action": "appended", "embeddings": 3, "speech_s": 4.2,
             "added": 1, "speaker_s": 12.93, "model": "campplus-int8@1.1"}
    assert enroll_summary(reply) == (
        "appended to alice (already enrolled; --replace starts over): +1 embedding, 4.2 s "
        "of speech; now 3 embeddings, 12.9 s in all (campplus-int8@1.1)")
    older = {k: v for k, v in reply.items() if k not in ("added", "speaker_s")}
    assert enroll_summary(older) == ("appended to alice (already enrolled; --replace starts "
                                     "over): 4.2 s of speech added; now 3 embeddings "
                                     "(campplus-int8@1.1)")
    assert enroll_summary({**reply, "action": "added", "embeddings": 1}).startswith(
        "enrolled alice: 1 embedding, 4.2 s of speech after VAD")
