"""``vggvox-client watch``: a live terminal view of who is speaking (rich).

One row per source: its state, the current speaker and confidence, and a
timeline of the last 60 s of turns, one colour per speaker (``unknown-N`` for
voices nobody enrolled). Below, the enrolled speakers and when each was last
heard; above, the daemon's model and drops (through a hub,
which has no model, its daemons). When the daemon goes away the view
says "reconnecting" and resumes when it is back. ``q`` or Ctrl-C quits.

``WatchState`` is the model: the bridges' shared ``SpeakingState`` (fed with
typed events and replies), and the view's colours; no terminal in it. ``render``
draws it; ``run`` owns the loop, the sockets and the keyboard.
"""

from __future__ import annotations

import select
import sys
import termios
import time
import tty
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from vggvox.protocol.events import Received
from vggvox.protocol.requests import ListRequest, StatusRequest
from vggvox_client.bridges import speaking
from vggvox_client.bridges.speaking import Source, SpeakingState
from vggvox_client.connection import ClientError, Connection

SPAN_S = int(speaking.SPAN_S)
"""Seconds of stream time the timeline shows, one cell each: the turns the model keeps."""
STATUS_EVERY_S = 5.0
"""How often it asks for status and the speakers (status events come between)."""
REDRAW_S = 1.0
"""Least time between two frames while events come."""
PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan",
           "bright_magenta", "bright_green", "bright_yellow")


@dataclass
class WatchState:
    """The view's model: the shared ``SpeakingState``, and what only a terminal needs."""

    state: SpeakingState = field(default_factory=SpeakingState)
    connected: bool | None = None
    """None until the first reply: connecting; False once it went away: reconnecting."""
    colours: dict[str, str] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    hub: str = ""
    """Through a hub (docs/hub.md), what it says of its daemons; "" from a daemon."""

    @property
    def sources(self) -> dict[str, Source]:
        return self.state.sources

    @property
    def last_seen(self) -> dict[str, float]:
        """Enrolled speaker -> wall time last heard (0: not since the daemon started)."""
        return self.state.enrolled

    @property
    def model(self) -> str:
        return self.state.model

    @model.setter
    def model(self, name: str) -> None:
        self.state.model = name

    def colour(self, label: str) -> str:
        if label not in self.colours:
            self.colours[label] = PALETTE[len(self.colours) % len(PALETTE)]
        return self.colours[label]

    def event(self, ev: Received | dict[str, Any]) -> None:
        self.state.apply(ev)

    def status(self, reply: dict[str, Any]) -> None:
        self.connected = True
        self.state.status_reply(reply)
        self.hub = hub_summary(reply)
        # A replay goes a minute after its end, as a source the daemon no longer has.
        self.state.forget_quiet(SPAN_S)

    def speakers(self, reply: dict[str, Any]) -> None:
        self.state.speakers_reply(reply)

    def timeline(self, src: Source) -> Text:
        cells = Text()
        start = src.now - SPAN_S
        for i in range(SPAN_S):
            t = start + i + 0.5
            label = next((lab for a, b, lab in src.turns.values() if a <= t < b), None)
            cells.append("█" if label else "·", style=self.colour(label) if label else "dim")
        return cells


def hub_summary(reply: dict[str, Any]) -> str:
    """A hub's status in a few words (it has no model of its own: each daemon has one);
    "" for a daemon's reply."""
    if not reply.get("hub"):
        return ""
    daemons = reply.get("daemons") or []
    up = sum(1 for d in daemons if d.get("connected"))
    names = ", ".join(str(d.get("node") or d.get("endpoint")) for d in daemons)
    plural = "" if len(daemons) == 1 else "s"
    return f"hub: {len(daemons)} daemon{plural} ({up} connected){': ' + names if names else ''}"


def shown(src: Source) -> str:
    """Who the view shows speaking: nobody once a source has finished."""
    return "" if src.state == "finished" else src.label


def ago(t: float) -> str:
    if not t:
        return "not heard yet"
    s = time.time() - t
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago"


def render(w: WatchState) -> Group:
    what = w.hub or f"model {w.model or '?'}"
    head = Text(f"vggvox watch — {what}   (q quits)", style="bold")
    if w.connected is None:
        head.append("   connecting to vggvoxd…", style="bold yellow")
    elif not w.connected:
        head.append("   reconnecting to vggvoxd…", style="bold red")
    rows = Table(title="sources", expand=False)
    for col in ("source", "state", "speaker", "conf", "drops", f"last {SPAN_S} s"):
        rows.add_column(col, no_wrap=True)
    # Every cell is a Text, never a str: rich parses a str as markup, and a name is
    # anyone's (a replay's label '[/x]' raised MarkupError and ended every open view).
    for src in w.sources.values():
        who = shown(src)
        speaker = Text(who or "—", style=w.colour(who) if who else "")
        conf = src.current_confidence
        rows.add_row(Text(src.name), Text(src.state or "active"), speaker,
                     Text(f"{conf:.2f}" if conf is not None else ""),
                     Text(str(src.dropped_windows)), w.timeline(src))
    people = Table(title="enrolled speakers", expand=False)
    people.add_column("speaker")
    people.add_column("last heard")
    for name, t in w.last_seen.items():
        people.add_row(Text(name, style=w.colour(name)), Text(ago(t)))
    return Group(head, rows, people, *(Text(line, style="dim") for line in w.log))


def run(conn: Connection, seconds: float | None = None) -> int:
    """The view, until ``q``, Ctrl-C or ``seconds``."""
    w = WatchState()
    sock = conn.subscribe(list(speaking.SPEAKING_TOPICS))
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)  # single keys, no echo: 'q' quits at once
    next_poll, until = 0.0, None if seconds is None else time.monotonic() + seconds
    drawn, dirty = 0.0, True
    try:
        # Drawn by hand, once a second, not rich's 4 times: with a poll of the daemon
        # every 5 s that keeps the view near 1 % of a core in continuous speech
        # (bench/bench_mqtt.py --bridge watch).
        with Live(render(w), auto_refresh=False, screen=False) as live:
            while until is None or time.monotonic() < until:
                if fd is not None and select.select([fd], [], [], 0)[0]:
                    if sys.stdin.read(1).lower() == "q":
                        break
                now = time.monotonic()
                if now >= next_poll:
                    next_poll, dirty = now + STATUS_EVERY_S, True
                    try:
                        w.status(conn.send(StatusRequest(), timeout=1.0))
                        w.speakers(conn.send(ListRequest(), timeout=1.0))
                    except ClientError:
                        w.connected = False  # the daemon is gone or restarting
                ev = conn.receive_event(sock, 0.25)  # the only wait: q answers within it
                while ev is not None:
                    w.event(ev)
                    dirty = True
                    ev = conn.receive_event(sock, 0.0)
                since = time.monotonic() - drawn
                if (dirty and since >= REDRAW_S) or since >= 2 * REDRAW_S:
                    live.update(render(w), refresh=True)
                    drawn, dirty = time.monotonic(), False
    finally:
        sock.close()
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return 0
