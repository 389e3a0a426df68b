"""A room through the real daemon (issue 22): FSDD's voices, one microphone, the same digits.

Half of FSDD's six speakers are enrolled through the daemon, their clips declared
as recorded on the source (``enroll FILE... --source room``); the stream is a
share of the test utterances of all six, one after the other with silence
between, fed through a lossless stdin source named ``room``. With the shipped
rule a good share of the strangers' utterances are named as an enrolled
speaker; the room measured from the enrollment clips and from the turns it
names must bring that down, keep it over a restart, and give it back on reset.
``scoring.adapt: false`` must give the events the daemon gave before rooms
existed (``data/rooms_adapt_off.json``, recorded from commit 59b93d6).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from daemon_proc import DaemonProcess

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox_client.connection import Connection
from vggvox_client.enroll import enroll

GOLDEN = Path(__file__).parent / "data" / "rooms_adapt_off.json"
PER_SPEAKER = 8
"""Test utterances of each speaker in the stream (of 20): 48 in all, about 4 minutes."""
GAP_S = 1.5
WALL_FIELDS = ("time", "seq", "captured", "node")
"""Event fields that are facts of one run or machine, not decisions: the wall clock, and
the daemon's node (the host name by default; added after the golden was recorded, and
pinned by tests/test_protocol.py's bytes)."""


@dataclass(frozen=True)
class Utt:
    speaker: str
    start: float
    end: float


def by_hash(names: set[str]) -> list[str]:
    return sorted(names, key=lambda s: hashlib.sha1(s.encode()).hexdigest())


def cpu() -> str:
    """The kind of CPU (ONNX Runtime's kernels, and so the last bits, depend on it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


Room = tuple[dict[str, list[Path]], bytes, list[Utt]]


@pytest.fixture(scope="module")
def room(speech_dir: Path) -> Room:
    return build_room(speech_dir)


def build_room(speech_dir: Path) -> Room:
    """(enrolled speaker -> clips, the stream's PCM, its utterances in order)."""
    def rows(name: str) -> list[tuple[str, str]]:
        return [(p, s) for p, s in (ln.split() for ln in (speech_dir / name).read_text()
                                    .splitlines() if ln.startswith("fsdd/"))]

    enroll_rows, test_rows = rows("enroll_list.csv"), rows("test_list.csv")
    enrolled = set(by_hash({s for _, s in enroll_rows})[::2])
    clips = {s: [speech_dir / p for p, t in enroll_rows if t == s] for s in sorted(enrolled)}
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), np.int16)
    parts, utts, at = [gap], [], GAP_S
    per: dict[str, int] = {}
    for path, speaker in sorted(test_rows, key=lambda r: hashlib.sha1(r[0].encode()).digest()):
        if per.get(speaker, 0) >= PER_SPEAKER:
            continue
        per[speaker] = per.get(speaker, 0) + 1
        x = (np.clip(load_audio(speech_dir / path), -1, 1) * 32767).astype(np.int16)
        parts += [x, gap]
        utts.append(Utt(speaker, at, at + len(x) / SAMPLE_RATE))
        at += (len(x) + len(gap)) / SAMPLE_RATE
    return clips, np.concatenate(parts).tobytes(), utts


def daemon(tmp: Path, adapt: bool | None) -> DaemonProcess:
    """A daemon whose one source, ``room``, reads PCM from its stdin (``adapt`` None:
    no such key, for the code of before)."""
    config = tmp / "vggvoxd.yaml"
    key = "" if adapt is None else f"scoring:\n  adapt: {'true' if adapt else 'false'}\n"
    # 30 ms blocks, one VAD frame: with the writes below, every read the daemon makes
    # is one whole frame, so the code of before (which cut windows by block) gives the
    # same items on every run too. Status every 0.5 s (not 5): run_stream waits for one to
    # know its subscription is in place.
    config.write_text("sources:\n  - {name: room, uri: stdin}\naudio:\n  block_ms: 30\n"
                      "status:\n  interval_s: 0.5\n" + key)
    return DaemonProcess(tmp, source=None, args=["--config", str(config)])


def enroll_in_room(tmp: Path, clips: dict[str, list[Path]], adapt: bool | None = True) -> None:
    d = daemon(tmp, adapt).start()
    try:
        for name, files in clips.items():
            enroll(d.conn, name, files, None, False, 64 << 20, force=True, source="room")
        if adapt:  # the room knows its clips at once (3 each, against the 2 others),
            # though the source has heard nothing
            room = d.conn.request("calibration")["sources"]["room"]
            assert room["enrolled_scores"] == 3 * len(clips) * (len(clips) - 1), room
    finally:
        d.stop()


def run_stream(d: DaemonProcess, pcm: bytes) -> list[dict[str, Any]]:
    """Feed the stream, and the decision events it gave, in order, once it is all decided."""
    sock = d.conn.subscribe(["speech", "speaker", "turn"])
    try:
        _wait_subscribed(d.conn, sock)
        feed_frames(d, pcm)
        events: list[dict[str, Any]] = []
        while True:
            ev = Connection.receive(sock, timeout=60.0)
            assert ev is not None, f"no event for 60 s: {d.output()}"
            events.append(ev)
            if ev["type"] == "speech.end" and ev["t_end"] >= len(pcm) / 2 / SAMPLE_RATE - GAP_S:
                return events
    finally:
        sock.close(linger=0)


def feed_frames(d: DaemonProcess, pcm: bytes) -> None:
    """Write the stream to the daemon's stdin one 30 ms frame a write (a write of up to
    PIPE_BUF bytes is atomic, so no read sees part of one), in a thread, then EOF."""
    assert d.proc is not None and d.proc.stdin is not None
    stdin, frame = d.proc.stdin, 2 * 480

    def run() -> None:
        try:
            for i in range(0, len(pcm), frame):
                stdin.write(pcm[i : i + frame])
                stdin.flush()
            stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the daemon went away

    threading.Thread(target=run, daemon=True).start()


def _wait_subscribed(conn: Connection, sock: Any) -> None:
    """ZeroMQ subscriptions take a moment to reach the publisher: wait for any event
    (a status event every 0.5 s), at most 15 s."""
    sub = conn.subscribe(["status"])
    try:
        conn.request("status")
        for _ in range(30):
            if Connection.receive(sub, timeout=0.5) is not None:
                return
    finally:
        sub.close(linger=0)


def named(events: list[dict[str, Any]], utts: list[Utt]) -> list[str | None]:
    """Each utterance's label: the one of the final turns that covers most of it."""
    finals = [e for e in events if e["type"] == "turn" and e["final"]]
    out: list[str | None] = []
    for u in utts:
        cover: dict[str | None, float] = {}
        for t in finals:
            overlap = min(u.end, t["t_end"]) - max(u.start, t["t_start"])
            if overlap > 0:
                cover[t["speaker"]] = cover.get(t["speaker"], 0.0) + overlap
        out.append(max(cover, key=lambda k: cover[k]) if cover else None)
    return out


def strangers_named(labels: list[str | None], utts: list[Utt], enrolled: set[str]) -> int:
    return sum(1 for lab, u in zip(labels, utts, strict=True)
               if u.speaker not in enrolled and lab is not None)


def decisions(events: list[dict[str, Any]]) -> list[bytes]:
    """Each event as msgpack bytes without its wall-clock fields."""
    return [msgpack.packb({k: v for k, v in e.items() if k not in WALL_FIELDS})
            for e in events]


@pytest.fixture(scope="module")
def shipped(room: Room, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return shipped_events(room, tmp_path_factory.mktemp("shipped"))


def shipped_events(room: Room, tmp: Path, adapt: bool | None = False) -> list[dict[str, Any]]:
    """The stream's events with ``scoring.adapt: false``, on a store enrolled as above."""
    clips, pcm, _ = room
    enroll_in_room(tmp, clips, adapt)
    d = daemon(tmp, adapt).start()
    try:
        return run_stream(d, pcm)
    finally:
        d.stop()


def test_adapt_false_gives_the_events_of_before(shipped: list[dict[str, Any]]) -> None:
    golden = json.loads(GOLDEN.read_text())
    if golden["cpu"] != cpu():
        pytest.skip(f"{GOLDEN.name} was recorded on another kind of CPU ({golden['machine']}), "
                    "whose floating point may differ in the last bits")
    want = [bytes.fromhex(h) for h in golden["events"]]
    got = decisions(shipped)
    assert len(got) == len(want)
    assert got == want


def test_the_room_names_fewer_strangers_survives_a_restart_and_resets(
        room: Room, shipped: list[dict[str, Any]], tmp_path: Path) -> None:
    clips, pcm, utts = room
    enrolled = set(clips)
    strangers = sum(1 for u in utts if u.speaker not in enrolled)
    before = strangers_named(named(shipped, utts), utts, enrolled)
    # The room's problem, visible with the shipped rule (FSDD: about half).
    assert before >= strangers // 5, (before, strangers)

    enroll_in_room(tmp_path, clips)
    d = daemon(tmp_path, adapt=True).start()
    try:
        cold = d.conn.request("calibration")["sources"]["room"]
        # 3 speakers x 3 clips, each against the 2 others.
        assert cold["enrolled_scores"] == 18 and cold["shift_sd"] > 0.5, cold
        events = run_stream(d, pcm)
        labels = named(events, utts)
        after = strangers_named(labels, utts, enrolled)
        right = sum(1 for lab, u in zip(labels, utts, strict=True)
                    if u.speaker in enrolled and lab == u.speaker)
        assert after <= max(1, before // 5), (before, after, strangers)
        assert right >= 0.8 * sum(1 for u in utts if u.speaker in enrolled)
        warm = d.conn.request("calibration")["sources"]["room"]
        assert warm["heard_turns"] > 0 and warm["shift_sd"] >= cold["shift_sd"], warm
        status = d.conn.request("status")["sources"]["room"]
        assert "raised" in status["scoring"] and status["room"]["scores"] == warm["scores"]
    finally:
        d.stop()
    assert "open-set cutoff raised" in d.output()

    d = daemon(tmp_path, adapt=True).start()  # the room is kept in the store
    try:
        kept = d.conn.request("calibration")["sources"]["room"]
        assert kept == warm
        reset = d.conn.request("calibration_reset", source="room")
        assert reset["reset"] == ["room"]
        back = reset["sources"]["room"]
        assert back["shift_sd"] == 0.0 and back["scores"] == 0
        assert back["rule"] == "calibrated to accept 0.5% of strangers"
    finally:
        d.stop()
    d = daemon(tmp_path, adapt=True).start()  # and so is the reset
    try:
        assert d.conn.request("calibration")["sources"]["room"] == back
        shown = client("calibration", "--control", d.conn.control)
        assert shown.returncode == 0 and shown.stdout.splitlines() == [
            "room: calibrated to accept 0.5% of strangers",
            "  from 0 stranger scores on 0.0 s of this channel's speech: 0 from enrollment "
            "clips, 0 from 0 named turns"], shown
        for args in (["calibration", "reset", "--source", "kitchen"],
                     ["enroll", "x", str(next(iter(clips.values()))[0]), "--source", "kitchen"]):
            bad = client(*args, "--control", d.conn.control)
            assert bad.returncode == 2 and "no source 'kitchen'" in bad.stderr, bad
            assert len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
    finally:
        d.stop()


def client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "vggvox-client"), *args],
                          capture_output=True, text=True, timeout=60)


def record_golden(speech_dir: Path, out: Path) -> None:
    """Write the golden events: run with the code of before first on ``PYTHONPATH``,
    ``python tests/test_daemon_rooms.py SPEECH_DIR OUT``."""
    import tempfile

    events = shipped_events(build_room(speech_dir), Path(tempfile.mkdtemp()), adapt=None)
    out.write_text(json.dumps({"cpu": cpu(), "events": [b.hex() for b in decisions(events)]},
                              indent=0) + "\n")


if __name__ == "__main__":
    record_golden(Path(sys.argv[1]), Path(sys.argv[2]))
