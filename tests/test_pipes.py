"""Every printing command of vggvox-client into a pipe whose reader stops: quiet, exit 0.

Issue 20: ``listen | head -3``, ``speakers | head -2`` and ``replay f | head -1``
ended in a BrokenPipeError traceback with exit 1. Each command here runs as a
real process with its stdout a real pipe, twice: into ``head -1`` (the user's
case), and into a pipe whose reader is closed before the command writes, so
that the broken pipe is certain whatever the output's size. The daemon's
commands run against a real vggvoxd.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import conversation

from conftest import FIXTURES, SPEECH
from vggvox_client.enroll import enroll

CLIENT = Path(sys.executable).parent / "vggvox-client"
QUIET = ("Traceback", "BrokenPipe", "Exception ignored", "Errno 32")


def into_head(argv: list[str], timeout: float = 120) -> tuple[int, str, str]:
    """(exit status, stderr, what head printed) of ``vggvox-client ARGV | head -1``."""
    writer = subprocess.Popen([str(CLIENT), *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # head alone reads the pipe: when it exits, the pipe is broken
    shown = head.communicate(timeout=timeout)[0].decode()
    err = writer.stderr.read().decode()
    return writer.wait(timeout=timeout), err, shown


def into_closed_pipe(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """(exit status, stderr) with stdout a pipe that nobody reads any more."""
    r, w = os.pipe()
    os.close(r)
    try:
        done = subprocess.run([str(CLIENT), *argv], stdout=w, stderr=subprocess.PIPE,
                              timeout=timeout)
    finally:
        os.close(w)
    return done.returncode, done.stderr.decode()


def check(argv: list[str]) -> None:
    code, err, shown = into_head(argv)
    assert code == 0 and not any(q in err for q in QUIET), (argv, code, err)
    assert shown.strip(), (argv, err)  # it did print, and head got the first line
    code, err = into_closed_pipe(argv)
    assert code == 0 and not any(q in err for q in QUIET), (argv, code, err)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, Path]]:
    tmp = tmp_path_factory.mktemp("pipes")
    convo = conversation(tmp)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.3}}))
    d = DaemonProcess(tmp, args=["--config", str(cfg)]).start(timeout=60)
    for name, files in convo.enroll.items():
        enroll(d.conn, name, files, None, False, 16 << 20)
    yield d, convo.stream
    d.stop()


def at(d: DaemonProcess, *argv: str) -> list[str]:
    return [*argv, "--control", d.conn.control, "--events", d.conn.events]


@pytest.mark.parametrize("argv", [
    ["speakers"], ["speakers", "--json"], ["status"], ["status", "--json"],
    ["listen", "--seconds", "10"], ["listen", "--json", "--seconds", "10"],
    ["replay", "STREAM"], ["replay", "STREAM", "--json"],
], ids=lambda a: " ".join(a))
def test_daemon_commands_into_a_closed_pipe(daemon: tuple[DaemonProcess, Path],
                                            argv: list[str]) -> None:
    d, stream = daemon
    check(at(d, *[str(stream) if a == "STREAM" else a for a in argv]))


def test_enroll_and_remove_into_a_closed_pipe(daemon: tuple[DaemonProcess, Path],
                                              tmp_path: Path) -> None:
    d, _ = daemon
    clips = conversation(tmp_path).enroll
    name = sorted(clips)[0]
    for argv in (["enroll", "carol", *map(str, clips[name])], ["remove", "carol"]):
        code, err = into_closed_pipe(at(d, *argv))
        assert code == 0 and not any(q in err for q in QUIET), (argv, err)
    names = [s["name"] for s in d.conn.request("list")["speakers"]]
    assert "carol" not in names  # the enrollment was done, then removed: both ran


def test_help_version_and_keygen_into_a_closed_pipe(tmp_path: Path) -> None:
    for argv in (["--help"], ["replay", "--help"], ["--version"]):
        check(argv)
    code, err = into_closed_pipe(["keygen", str(tmp_path / "keys"), "alice"])
    assert code == 0 and not any(q in err for q in QUIET), err
    assert (tmp_path / "keys" / "alice.key_secret").exists()


@pytest.mark.skipif(not (FIXTURES / "stream_2spk.wav").exists(),
                    reason=f"shared fixtures not found at {FIXTURES} (a fresh clone has no "
                           "../shared)")
def test_file_commands_into_a_closed_pipe(tmp_path: Path) -> None:
    """offline, verify, similarity, evaluate and conversations: no daemon."""
    clips = sorted(FIXTURES.glob("ls-*__*.wav"))
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("".join(f"{c} {c.name.split('__')[0]}\n" for c in clips[::3]))
    test = tmp_path / "test.txt"
    test.write_text("".join(f"{c} {c.name.split('__')[0]}\n" for c in clips))
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {clips[0]} {clips[1]}\n0 {clips[0]} {clips[3]}\n")
    check(["similarity", *map(str, clips[:3])])
    check(["offline", "--enroll-list", str(enroll), "--test-list", str(test),
           "--out", str(tmp_path / "r.csv")])
    check(["verify", "--trials", str(trials), "--workers", "1", "--cache",
           str(tmp_path / "cache")])
    check(["evaluate", str(FIXTURES / "stream_2spk.wav"), "--rttm",
           str(FIXTURES / "stream_2spk.rttm"), "--enroll-list", str(enroll)])
    if (SPEECH / "test_list.csv").exists():
        check(["conversations", "--material", str(SPEECH / "test_list.csv"), "--enroll-list",
               str(SPEECH / "enroll_list.csv"), "--out", str(tmp_path / "convs"),
               "--count", "2", "--duration", "20", "--enrolled", "2", "--strangers", "1"])
