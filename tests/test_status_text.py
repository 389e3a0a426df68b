"""``vggvox-client status`` shows each stage and source as the daemon reports it.

Issue 20: with no microphone, ``status`` said ``mic ok 0 failures`` while the
source was ``waiting``. The daemon's reply now says ``waiting``; the client's
table must show what it gets, never a state of its own (and through a real
daemon with no microphone: tests/test_daemon_cli.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vggvox_client.daemon_cmds import format_status

CLIENT = Path(sys.executable).parent / "vggvox-client"


def test_each_stage_is_shown_as_reported() -> None:
    text = format_status({"state": "waiting", "source": "mic", "stages": {
        "embedder": {"state": "ok", "failures": 0},
        "mic": {"state": "waiting", "failures": 0},
        "kitchen": {"state": "lost", "failures": 3, "last_error": "no audio for 3 s"}},
        "sources": {"mic": {"state": "waiting"}, "kitchen": {"state": "lost"}}})
    assert re.search(r"^state +waiting$", text, re.M)
    assert re.search(r"^  mic +waiting +0 failures$", text, re.M), text
    assert re.search(r"^  kitchen +lost +3 failures  last error: no audio for 3 s$", text, re.M)
    assert re.search(r"^sources\n  mic +waiting ", text, re.M), text


def test_each_source_shows_its_room() -> None:
    room = {"rule": "calibrated to accept 0.5% of strangers, its cutoff raised 1.25 sd for "
                    "this room", "adapts": True, "scores": 60, "speech_s": 161.9}
    text = format_status({"state": "running", "sources": {
        "kitchen": {"state": "running", "room": room},
        "hall": {"state": "running", "room": {**room, "adapts": False}}}})
    assert re.search(r"^room +kitchen: calibrated to accept 0.5% of strangers, its cutoff "
                     r"raised 1.25 sd for this room; from 60 stranger scores on 162 s of its "
                     r"speech$", text, re.M), text
    assert "hall:" not in text
