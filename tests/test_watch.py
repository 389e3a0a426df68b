"""``vggvox-client watch`` in a real terminal: tmux runs it, the test reads the pane.

A real daemon, a replayed conversation, the daemon stopped ("reconnecting") and
started again (it resumes), and ``q`` typed into the pane to quit. The last
screen is kept as a text artefact (``watch-screen.txt`` in the test's folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import conversation

from vggvox_client.bridges.watch.view import WatchState, render
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is needed (apt install tmux)")
CLIENT = Path(sys.executable).parent / "vggvox-client"
# A tmux server of this process's own: the default one is shared by every test run on
# the machine, and it exits when its last session ends, under another run's feet.
TMUX_SOCKET = Path(tempfile.gettempdir()) / f"vggvox-tmux-{os.getpid()}"
TMUX = ("tmux", "-S", str(TMUX_SOCKET))


@pytest.fixture(scope="module", autouse=True)
def _own_tmux_server() -> Iterator[None]:
    yield
    subprocess.run([*TMUX, "kill-server"], capture_output=True, timeout=10)
    TMUX_SOCKET.unlink(missing_ok=True)  # tmux leaves its socket file behind


def pane(session: str) -> str:
    return subprocess.run([*TMUX, "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, timeout=10).stdout


def wait_pane(session: str, *want: str, timeout: float = 20.0, absent: bool = False) -> str:
    """The pane once it shows every one of ``want`` (or none, with ``absent``): the view
    redraws in place, so one capture may catch a frame half drawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = pane(session)
        if all((w in screen) != absent for w in want):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{'still' if absent else 'no'} {want!r} after {timeout} s:\n"
                         f"{pane(session)}")


def start_watch(d: DaemonProcess, tmp: Path, session: str, width: int, after: str = "") -> None:
    """The real view in a detached tmux session of ``width`` columns; its stderr goes to
    ``tmp/watch.err``, then ``after`` runs in the pane (a shell command)."""
    # tmux gives the pane COLUMNS and LINES of its first size; rich would keep to them.
    cmd = (f"env -u COLUMNS -u LINES {CLIENT} --control {d.conn.control} "
           f"--events {d.conn.events} watch 2> {tmp}/watch.err{after}")
    subprocess.run([*TMUX, "new-session", "-d", "-s", session, "-x", str(width), "-y", "40",
                    cmd], check=True, timeout=10, stdin=subprocess.DEVNULL)
    # Under pytest tmux may keep a detached session at 80x24 whatever -x says: a
    # person's SSH terminal is wider, so make it so (the view follows the size).
    subprocess.run([*TMUX, "resize-window", "-t", session, "-x", str(width), "-y", "40"],
                   check=True, timeout=10)


def test_watch_under_tmux(tmp_path: Path) -> None:
    convo = conversation(tmp_path)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    for name, files in convo.enroll.items():
        enroll(d.conn, name, files, None, False, 16 << 20)
    names = list(convo.enroll)
    session = f"vggvox-watch-{os.getpid()}"
    start_watch(d, tmp_path, session, 160)
    try:
        wait_pane(session, *names, "not heard yet", "stdin", "running")
        replay_one(d.conn, convo.stream, realtime=False, as_json=True, timeout=120,
                   echo=False)
        screen = wait_pane(session, "s ago", "replay:", "█", *names)
        (tmp_path / "watch-screen.txt").write_text(screen)
        print(screen)  # the artefact, in the test's output too

        d.stop()
        wait_pane(session, "reconnecting", timeout=15)
        d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
        wait_pane(session, "reconnecting", timeout=20, absent=True)

        subprocess.run([*TMUX, "send-keys", "-t", session, "q"], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while subprocess.run([*TMUX, "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "q did not quit"
            time.sleep(0.1)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
        d.stop()
    assert "Traceback" not in (tmp_path / "watch.err").read_text()


def test_the_view_model_keeps_a_minute_of_turns() -> None:
    w = WatchState()
    for i in range(100):  # a turn a second for 100 s
        w.event({"type": "turn", "source": "mic", "turn": i, "t_start": float(i),
                 "t_end": i + 1.0, "speaker": "alice" if i % 2 else None,
                 "unknown": None if i % 2 else "unknown-1", "confidence": 0.9})
    src = w.sources["mic"]
    assert min(a for a, _, _ in src.turns.values()) >= 100 - 61
    assert src.speaker == "alice" and "alice" in w.last_seen
    line = w.timeline(src).plain
    assert len(line) == 60 and set(line) == {"█"}
    w.event({"type": "speech.end", "source": "mic", "t_start": 100.0, "t_end": 100.0})
    assert w.sources["mic"].speaker == ""
    assert render(w) is not None


def test_the_view_shows_when_the_daemon_last_heard_each_speaker() -> None:
    """A view opened after a speaker spoke takes the daemon's last_heard; its own later
    sightings win; a speaker removed from the store leaves the list."""
    w = WatchState()
    w.speakers({"speakers": [{"name": "alice", "last_heard": 1000.0},
                             {"name": "bob", "last_heard": None},
                             {"name": "carol", "last_heard": 5.0}]})
    assert w.last_seen == {"alice": 1000.0, "bob": 0.0, "carol": 5.0}
    w.last_seen["carol"] = 2000.0  # heard by this view since
    w.speakers({"speakers": [{"name": "alice", "last_heard": 1500.0},
                             {"name": "carol", "last_heard": 5.0}]})
    assert w.last_seen == {"alice": 1500.0, "carol": 2000.0}


MARKUP = ("[/x]", "[bold]", "[link=https://evil.example]x", "[/]")
"""Names rich would take as markup: '[/x]' and '[/]' close nothing (MarkupError)."""


def test_names_are_shown_as_text_never_markup() -> None:
    """Issue 20: a replay label '[/x]' raised MarkupError in every open view."""
    import io

    from rich.console import Console

    w = WatchState()
    for i, name in enumerate(MARKUP):
        source = f"replay:{name}-0123456789ab"
        w.event({"type": "turn", "source": source, "turn": 1, "t_start": 0.0, "t_end": 2.0,
                 "speaker": name, "unknown": None, "confidence": 0.9})
        w.event({"type": "status", "source": source, "t_start": 2.0, "t_end": 2.0,
                 "state": name, "dropped_windows": i})
    w.speakers({"speakers": [{"name": n, "last_heard": None} for n in MARKUP]})
    w.log.append("[/x] said [bold]")
    w.model = "[/]"
    console = Console(file=io.StringIO(), width=240, record=True)
    console.print(render(w))
    screen = console.export_text()
    for name in MARKUP:
        assert f"replay:{name}-0123456789ab" in screen and f"│ {name} " in screen, screen
    assert "[/x] said [bold]" in screen and "model [/]" in screen


def test_watch_under_tmux_survives_markup_in_names(tmp_path: Path) -> None:
    """The real view, a real daemon: speakers enrolled as '[bold]' and '[link=...]x', a
    replay labelled '[/x]'; the view shows them as written and quits with 0 on q."""
    convo = conversation(tmp_path)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    names = dict(zip(sorted(convo.enroll), MARKUP[1:3], strict=True))
    for real, shown in names.items():
        enroll(d.conn, shown, convo.enroll[real], None, False, 16 << 20)
    session = f"vggvox-markup-{os.getpid()}"
    start_watch(d, tmp_path, session, 200, f"; echo $? > {tmp_path}/watch.status")
    try:
        wait_pane(session, *names.values(), "not heard yet")
        replay_one(d.conn, convo.stream, realtime=False, as_json=True, timeout=120,
                   echo=False, label="[/x]")
        screen = wait_pane(session, "replay:[/x]-", "s ago", *names.values())
        (tmp_path / "watch-markup-screen.txt").write_text(screen)
        subprocess.run([*TMUX, "send-keys", "-t", session, "q"], check=True, timeout=10)
        deadline = time.monotonic() + 10
        while not (tmp_path / "watch.status").exists():
            assert time.monotonic() < deadline, "q did not quit:\n" + pane(session)
            time.sleep(0.1)
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True)
        d.stop()
    err = (tmp_path / "watch.err").read_text()
    assert (tmp_path / "watch.status").read_text().strip() == "0", err
    assert "Traceback" not in err and "MarkupError" not in err, err
