"""The bridges' shared model (``bridges/speaking.py``), their registry, and the
systemd template any bridge runs under. Fast: no daemon."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from unitfile import settings as unit_settings

from conftest import ROOT
from vggvox.protocol.events import (
    EnrollmentEvent,
    NamedEvent,
    SpeechEndEvent,
    StatusEvent,
    TurnEvent,
    encode,
    from_wire,
)
from vggvox_client import bridges
from vggvox_client.bridges.speaking import SpeakingState
from vggvox_client.cli import build_parser

TEMPLATE = ROOT / "systemd" / "vggvox-bridge@.service"


def turn(n: int, start: float, end: float, speaker: str = "", unknown: str = "",
         final: bool = False, source: str = "mic") -> TurnEvent:
    return TurnEvent(source, start, end, turn=n, speaker=speaker or None,
                     unknown=unknown or None, confidence=0.8, final=final)


def test_who_is_speaking_from_turns_to_silence() -> None:
    s = SpeakingState()
    src = s.apply(turn(1, 0.0, 1.0, speaker="alice"))
    assert (src.label, src.current_confidence, src.turn, src.final) == ("alice", 0.8, 1, False)
    assert s.enrolled["alice"] > 0
    s.apply(turn(1, 0.0, 2.0, speaker="alice", final=True))
    assert src.final and src.turns[1] == (0.0, 2.0, "alice")
    s.apply(turn(2, 2.0, 3.0, unknown="unknown-1"))
    assert (src.label, src.speaker, src.unknown) == ("unknown-1", "", "unknown-1")
    s.apply(turn(3, 3.0, 4.0))  # a turn of neither
    assert src.label == "?"
    s.apply(SpeechEndEvent("mic", 4.0, 4.0))
    assert (src.label, src.current_confidence, src.confidence) == ("", None, 0.8)
    assert src.now == 4.0 and list(s.sources) == ["mic"]


def test_a_named_voice_takes_its_turns_and_the_current_one() -> None:
    s = SpeakingState()
    s.apply(turn(1, 0.0, 1.0, unknown="unknown-2"))
    s.apply(turn(2, 1.0, 2.0, speaker="bob"))
    s.apply(turn(3, 2.0, 3.0, unknown="unknown-2"))
    src = s.apply(NamedEvent("mic", 3.0, 3.0, unknown="unknown-2", speaker="carol",
                             turns=[1, 3]))
    assert [t.label for t in src.turns.values()] == ["carol", "bob", "carol"]
    assert src.label == "carol" and "carol" in s.enrolled
    s.apply(EnrollmentEvent("mic", 3.0, 3.0, action="removed", speaker="carol"))
    assert "carol" not in s.enrolled


def test_turns_are_kept_for_the_span_and_at_most_max_turns() -> None:
    s = SpeakingState(span_s=10.0, max_turns=5)
    for i in range(30):
        src = s.apply(turn(i, float(i), i + 1.0, speaker="alice"))
    assert sorted(src.turns) == [25, 26, 27, 28, 29]
    s = SpeakingState(span_s=10.0)
    for i in range(30):
        src = s.apply(turn(i, float(i), i + 1.0, speaker="alice"))
    assert min(t.start for t in src.turns.values()) >= 30 - 11


def test_the_least_recently_heard_source_goes_beyond_the_cap() -> None:
    s = SpeakingState(max_sources=2)
    for name in ("a", "b", "a", "c"):
        s.apply(StatusEvent(name, 0.0, 0.0, state="running", dropped_windows=3))
    assert sorted(s.sources) == ["a", "c"] and s.sources["a"].dropped_windows == 3
    assert s.forget("a") is not None and list(s.sources) == ["c"]


def test_replies_merge_with_what_the_events_said() -> None:
    s = SpeakingState()
    s.apply(turn(1, 0.0, 1.0, speaker="alice"))
    s.status_reply({"model": "m@1", "sources": {"mic": {"state": "lost"},
                                                "kitchen": {"dropped_windows": 2}}})
    assert s.model == "m@1" and s.sources["mic"].state == "lost"
    assert (s.sources["kitchen"].state, s.sources["kitchen"].dropped_windows) == ("?", 2)
    s.speakers_reply({"speakers": [{"name": "bob", "last_heard": 5.0}, {"name": "alice"}]})
    assert list(s.enrolled) == ["alice", "bob"] and s.enrolled["alice"] > 5.0
    assert s.forget_quiet(60.0) == [] and sorted(s.forget_quiet(-1.0)) == ["kitchen", "mic"]


def test_a_gap_in_seq_is_loss_and_a_new_run_is_not() -> None:
    s = SpeakingState()
    for seq in (7, 8, 11, 12, 1, 2, 4):  # 9, 10 missed; the daemon restarted; 3 missed
        s.apply(from_wire(encode(StatusEvent("mic", 0.0, 0.0), seq)))
    assert (s.loss.missed, s.loss.restarts, s.loss.last) == (3, 1, 4)
    s.apply({"type": "status", "source": "mic", "t_start": 0.0, "t_end": 0.0})  # no seq
    assert s.loss.missed == 3


def test_the_registry_finds_every_bridge_and_the_command_line_has_them() -> None:
    found = bridges.bridges()
    assert {"mqtt", "watch", "web"} <= set(found) and "speaking" not in found
    assert list(found) == sorted(found)
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, bridge in found.items():
        assert commands[name].epilog == bridge.examples
        assert bridge.examples.startswith(f"examples:\n  vggvox-client {name}")


def test_two_bridges_of_one_name_are_refused(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    declares = ("from vggvox_client.bridges import Bridge\n"
                "BRIDGE = Bridge('watch', 'another watch', '', print, lambda c, a: 0)\n")
    (tmp_path / "zz_watch_too.py").write_text(declares)
    monkeypatch.setattr(bridges, "__path__", [*bridges.__path__, str(tmp_path)])
    bridges.bridges.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"two bridges are named 'watch': in "
                                             r"vggvox_client\.bridges\.watch and "
                                             r"vggvox_client\.bridges\.zz_watch_too"):
            bridges.bridges()
    finally:
        sys.modules.pop("vggvox_client.bridges.zz_watch_too", None)
        bridges.bridges.cache_clear()


def test_the_template_unit_runs_any_bridge_in_the_socket_group() -> None:
    s = unit_settings(TEMPLATE)
    assert s["ExecStart"] == ["/opt/vggvox/.venv/bin/vggvox-client %i $VGGVOX_BRIDGE_ARGS "
                              "--log-level INFO"]
    assert s["EnvironmentFile"] == ["/etc/vggvox/bridge-%i.env"]
    assert s["SupplementaryGroups"] == ["vggvox"] and s["DynamicUser"] == ["yes"]
    assert s["After"][0].startswith("vggvoxd.service")
    assert "vggvox-bridge@" in (ROOT / "systemd" / "install-service.sh").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_template_verifies_and_its_exposure_is_at_most_2(tmp_path: Path) -> None:
    unit = tmp_path / "vggvox-bridge@webhook.service"  # an instance, as installed
    unit.write_text(TEMPLATE.read_text().replace("/opt/vggvox", str(ROOT)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for vggvox-bridge@webhook\.service: ([0-9.]+)",
                      done.stdout)
    assert found and float(found.group(1)) <= 2.0, done.stdout + done.stderr
