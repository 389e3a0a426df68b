"""The README's quick start, end to end: enroll one speaker, replay a conversation of
two, name the other one's voice, and hear it by name.

Issue 20: ``name unknown-1 bob`` after a ``replay`` said ``no unknown voice
'unknown-1' (now: {'mic': []})``: a replay's voices went with its session. The
daemon now keeps a finished replay's unknown voices nameable for a while. Real
daemon, real client processes, a real two-speaker conversation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon_proc import DaemonProcess
from speakers_fixture import conversation

CLIENT = Path(sys.executable).parent / "vggvox-client"


def client(d: DaemonProcess, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLIENT), *argv, "--control", d.conn.control, "--events",
                           d.conn.events], capture_output=True, text=True, timeout=180)


def runs(labels: list[str]) -> list[str]:
    """Consecutive repeats merged: a turn the decider splits in two is still one."""
    return [x for i, x in enumerate(labels) if i == 0 or x != labels[i - 1]]


def test_name_an_unknown_voice_after_its_replay(tmp_path: Path) -> None:
    convo = conversation(tmp_path)
    alice = sorted(convo.enroll)[0]
    d = DaemonProcess(tmp_path).start(timeout=60)
    try:
        done = client(d, "enroll", "alice", *map(str, convo.enroll[alice]))
        assert done.returncode == 0, done.stderr
        done = client(d, "replay", str(convo.stream), "--json")
        assert done.returncode == 0, done.stderr
        turns = [e for e in map(json.loads, done.stdout.splitlines())
                 if e["type"] == "turn" and e["final"]]
        unknowns = {t["unknown"] for t in turns if t["unknown"]}
        assert len(unknowns) == 1, turns  # the other speaker, one voice
        label = unknowns.pop()

        done = client(d, "name", label, "bob")  # after the replay ended, as the README
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{label} on replay:") and " is now bob: " in done.stdout
        listed = client(d, "speakers", "--json")
        assert {s["name"] for s in json.loads(listed.stdout)["speakers"]} == {"alice", "bob"}

        # The next replay names both.
        again = client(d, "replay", str(convo.stream), "--json")
        said = [e["speaker"] for e in map(json.loads, again.stdout.splitlines())
                if e["type"] == "turn" and e["final"]]
        spoken = ["alice" if t[2] == alice else "bob" for t in convo.turns]
        assert runs(said) == runs(spoken), (said, spoken)

        # A label nobody has: said in words, no Python dict.
        done = client(d, "name", "unknown-9", "carol")
        assert done.returncode == 2 and "{" not in done.stderr, done.stderr
        assert done.stderr.startswith("vggvox-client: error: "), done.stderr
    finally:
        d.stop()
