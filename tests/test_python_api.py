"""The public Python API: what ``vggvox`` and ``vggvox_client`` export, typed events and
error codes, and the three examples of docs/python.md, each run as written on real speech
(the third against a real daemon, found through the user's config file)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess

from conftest import ROOT

DOC = ROOT / "docs" / "python.md"
CLIPS = {"a1": "ls-3005__3005-163389-0000", "a2": "ls-3005__3005-163389-0001",
         "b1": "ls-3331__3331-159605-0000", "meeting": "stream_2spk"}


def examples() -> list[str]:
    found = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(found) == 3, "docs/python.md should hold three examples"
    return found


def run_example(code: str, folder: Path, env: dict[str, str] | None = None) -> str:
    (folder / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=folder, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def who(line: str) -> str:
    """The label in an example's line: the word after the times (``... 3.2 s alice``)."""
    return line.split(" s ", 1)[1].split()[0]


@pytest.fixture
def folder(tmp_path: Path, fixtures_dir: Path) -> Path:
    for name, src in CLIPS.items():
        shutil.copy(fixtures_dir / f"{src}.wav", tmp_path / f"{name}.wav")
    return tmp_path


def test_the_public_names_import() -> None:
    import vggvox
    import vggvox_client

    for package in (vggvox, vggvox_client):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package, name)
    assert (ROOT / "vggvox" / "py.typed").exists()
    assert not hasattr(vggvox, "Client"), "the library does not export the clients"


def test_example_1_who_speaks_when_in_a_file(folder: Path) -> None:
    out = run_example(examples()[0], folder)
    labels = [who(line) for line in out.splitlines()]
    merged = [n for i, n in enumerate(labels) if i == 0 or n != labels[i - 1]]
    assert merged == ["alice", "bob", "alice", "bob"], out


def test_example_2_enroll_and_search_in_memory(folder: Path) -> None:
    out = run_example(examples()[1], folder).split()
    assert out[0] == "alice:" and out[2] == "bob:" and float(out[1]) > float(out[3]), out


def test_example_3_follows_a_running_daemons_turns(folder: Path, tmp_path: Path) -> None:
    from vggvox.protocol.events import EnrollmentEvent
    from vggvox_client import Client, ClientError
    from vggvox_client.replay import replay_one

    (tmp_path / "d").mkdir()
    d = DaemonProcess(tmp_path / "d").start()
    try:
        client = Client(d.conn.control, d.conn.events, timeout=30)
        assert client.enroll("alice", [folder / "a1.wav", folder / "a2.wav"])["action"] == "added"
        events = client.events(["enrollment"], timeout=5)
        assert client.enroll("bob", [folder / "b1.wav", folder / "b1.wav"])["speaker"] == "bob"
        first = next(events)
        assert isinstance(first, EnrollmentEvent) and first.speaker == "bob"
        events.close()
        with pytest.raises(ClientError) as refused:
            client.remove("nobody")
        assert refused.value.code == "not_found"
        # The example finds the daemon as any client does: here, the user's config file.
        config = tmp_path / "config" / "vggvox"
        config.mkdir(parents=True)
        (config / "vggvoxd.yaml").write_text(yaml.safe_dump(
            {"endpoints": {"control": d.conn.control, "events": d.conn.events}}))
        out: list[str] = []
        runner = threading.Thread(target=lambda: out.append(run_example(
            examples()[2], folder, {"XDG_CONFIG_HOME": str(tmp_path / "config")})))
        runner.start()
        time.sleep(2.0)  # the example is subscribed: now replay the meeting
        replay_one(d.conn, folder / "meeting.wav", realtime=False, as_json=True,
                   timeout=60)
        runner.join(timeout=90)
        assert not runner.is_alive() and out, "the example did not end"
        lines = out[0].splitlines()
        assert lines[0].startswith("2 speakers enrolled, "), lines
        said = [who(line) for line in lines[1:]]
        merged = [n for i, n in enumerate(said) if i == 0 or n != said[i - 1]]
        assert merged == ["alice", "bob", "alice", "bob"], out[0]
    finally:
        d.stop()
