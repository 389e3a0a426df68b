"""vggvox-client's daemon commands, end to end against a running vggvoxd."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from daemon_proc import DaemonProcess
from speakers_fixture import Conversation, conversation

from vggvox_client.cli import main


@pytest.fixture
def daemon(tmp_path: Path):
    d = DaemonProcess(tmp_path).start()
    yield d
    d.stop()


def cli(capsys: pytest.CaptureFixture[str], d: DaemonProcess, *argv: str) -> tuple[int, str, str]:
    code = main(["--control", d.conn.control, "--events", d.conn.events, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_enroll_speakers_replay_listen_remove(capsys: pytest.CaptureFixture[str],
                                              daemon: DaemonProcess, tmp_path: Path) -> None:
    convo: Conversation = conversation(tmp_path)
    names = sorted(convo.enroll)
    for name in names:
        code, out, _ = cli(capsys, daemon, "enroll", name, *map(str, convo.enroll[name]))
        assert code == 0 and out.startswith(f"enrolled {name}: ")
    # The same name again without --replace: the clips join its voiceprint, and it says so.
    code, out, _ = cli(capsys, daemon, "enroll", names[0], *map(str, convo.enroll[names[0]]))
    assert code == 0 and out.startswith(f"appended to {names[0]} (already enrolled")
    # What the append added, apart from the speaker's totals (issue 20).
    added = re.search(r": \+(\d+) embeddings?, ([\d.]+) s of speech; now (\d+) embeddings, "
                      r"([\d.]+) s in all", out)
    assert added and int(added[3]) > int(added[1]) and float(added[4]) > float(added[2]), out
    code, out, _ = cli(capsys, daemon, "enroll", names[0], str(convo.enroll[names[0]][0]),
                       "--replace", "--json")
    assert code == 0 and json.loads(out)["embeddings"] == 1
    assert json.loads(out)["action"] == "replaced"
    code, out, _ = cli(capsys, daemon, "speakers", "--json")
    assert [s["name"] for s in json.loads(out)["speakers"]] == names

    # listen in the background while a replay runs
    heard: list[str] = []

    def listen() -> None:
        sock = daemon.conn.subscribe(["speaker"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(heard) < 5:
            ev = daemon.conn.receive(sock, 0.2)
            if ev is not None:
                heard.append(json.dumps(ev))
        sock.close()

    t = threading.Thread(target=listen)
    t.start()
    time.sleep(0.3)
    lst = tmp_path / "replay_list.txt"
    lst.write_text(f"{convo.stream} {names[0]}\n")
    before = time.time()
    code, out, _ = cli(capsys, daemon, "speakers", "--json")
    assert all(s["last_heard"] is None for s in json.loads(out)["speakers"])
    code, out, _ = cli(capsys, daemon, "replay", str(lst), "--json")
    t.join(timeout=35)
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert code == 0 and any(e["type"] == "speaker" for e in lines)
    assert all(e["source"].startswith("replay:") for e in lines)
    assert len(heard) == 5
    # Each speaker a turn named is listed with when it was last heard.
    named = {e["speaker"] for e in lines if e["type"] == "turn" and e.get("speaker")}
    code, out, _ = cli(capsys, daemon, "speakers", "--json")
    last = {s["name"]: s["last_heard"] for s in json.loads(out)["speakers"]}
    assert named and all(before <= last[n] <= time.time() for n in named)

    code, out, _ = cli(capsys, daemon, "remove", names[0])
    assert code == 0 and out.strip() == f"removed {names[0]}"
    code, _, err = cli(capsys, daemon, "remove", names[0])
    assert code == 2 and "no speaker named" in err
    assert daemon.conn.request("reload")["speakers"] == 1


def test_listen_json_is_one_object_a_line(capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    cfg = tmp_path / "fast_heartbeat.yaml"
    cfg.write_text("status:\n  interval_s: 0.3\n")
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    try:
        code, out, _ = cli(capsys, d, "listen", "--json", "--topic", "status", "--count", "2",
                           "--seconds", "5")
    finally:
        d.stop()
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(events) == 2
    assert all(e["type"] == "status" and e["v"] == 1 and "queue" in e for e in events)
    assert events[1]["seq"] > events[0]["seq"]


def test_client_without_a_daemon_says_so(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    code = main(["--control", f"ipc://{tmp_path}/nothing.sock", "--timeout", "0.5", "speakers"])
    err = capsys.readouterr().err
    assert code == 2 and f"vggvoxd is not running: no socket at {tmp_path}/nothing.sock" in err
    assert len(err.strip().splitlines()) == 1
    # A stale socket (a daemon that died without cleaning up) is told apart.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))
    stale.close()
    code = main(["--control", f"ipc://{tmp_path}/stale.sock", "--timeout", "0.5", "speakers"])
    assert code == 2 and "stale socket" in capsys.readouterr().err
    # A daemon that is there but silent (on TCP, nothing to probe) times out, saying so.
    code = main(["--control", "tcp://127.0.0.1:9", "--timeout", "0.5", "speakers"])
    assert code == 2 and "no answer from vggvoxd" in capsys.readouterr().err


def test_enroll_needs_files_or_live(capsys: pytest.CaptureFixture[str],
                                    daemon: DaemonProcess) -> None:
    code, _, err = cli(capsys, daemon, "enroll", "alice")
    assert code == 2 and "either FILE... or --live" in err


def test_status_remove_json_plurals_and_options_after(capsys: pytest.CaptureFixture[str],
                                                      daemon: DaemonProcess,
                                                      tmp_path: Path) -> None:
    convo: Conversation = conversation(tmp_path)
    name = sorted(convo.enroll)[0]
    one = str(convo.enroll[name][0])
    # Global options after the command, as the README has them.
    code = main(["enroll", name, one, "--control", daemon.conn.control,
                 "--events", daemon.conn.events, "--timeout", "60"])
    out = capsys.readouterr().out
    assert code == 0 and ": 1 embedding, " in out
    code, out, _ = cli(capsys, daemon, "speakers")
    assert code == 0 and ", 1 speaker\n" in out and "  1 embedding " in out
    code = main(["speakers", "--json", "--control", daemon.conn.control])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and "ok" not in listed and listed["speakers"][0]["name"] == name
    # Times in --json are ISO 8601, not Unix seconds.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00",
                        listed["speakers"][0]["updated"])

    daemon.conn.request("reload")  # the daemon's count follows the store on its next turn
    code, out, _ = cli(capsys, daemon, "status", "--json")
    status = json.loads(out)
    assert code == 0 and "ok" not in status
    assert status["speakers"] == 1 and {"embedder", "events", "control"} <= set(status["stages"])
    assert status["store"] == str(daemon.store)  # where the voiceprints live
    code, out, _ = cli(capsys, daemon, "status")
    assert code == 0
    for line in ("state ", "model ", "scoring ", f"store      {daemon.store}",
                 "speakers   1 speaker", "stages",
                 "  embedder ", "counters", "  dropped windows ", "connections"):
        assert line in out, line

    code, out, _ = cli(capsys, daemon, "remove", name, "--json")
    assert code == 0 and json.loads(out) == {"removed": name, "erasure": "complete"}
    code, out, _ = cli(capsys, daemon, "speakers")
    assert code == 0 and ", 0 speakers" in out
