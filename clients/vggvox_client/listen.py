"""``vggvox-client listen``: the daemon's events, printed one a line as they come.

``format_event`` is each event's line in words (``emit``'s, without ``--json``);
``replay`` prints its file's events with the same ``emit``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from vggvox.protocol.events import (
    EnrollmentEvent,
    NamedEvent,
    SpeakerEvent,
    StatusEvent,
    TurnEvent,
)
from vggvox_client.connection import Connection, probe


def format_event(ev: dict[str, Any]) -> str:
    head = f"{ev['source']} [{ev['t_start']:7.2f} - {ev['t_end']:7.2f}] {ev['type']:12s}"
    if ev["type"] == SpeakerEvent.topic:
        who = ev["speaker"] if ev["speaker"] is not None else "(unknown)"
        best = ", ".join(f"{n} {s:.2f}" for n, s in ev["top"][:3])
        return f"{head} {who:16s} score {ev['score']:.3f}  top: {best}"
    if ev["type"] == TurnEvent.topic:
        who = ev["speaker"] or ev.get("unknown") or "(unknown)"
        state = "final" if ev["final"] else "open"
        return (f"{head} #{ev['turn']:<4d} {who:16s} score {ev['score']:.3f}  "
                f"confidence {ev['confidence']:.2f}  {state}")
    if ev["type"] == EnrollmentEvent.topic:
        return f"{head} {ev['action']} {ev['speaker']}"
    if ev["type"] == NamedEvent.topic:
        turns = ", ".join(f"#{t}" for t in ev["turns"]) or "none closed"
        return f"{head} {ev['unknown']} is {ev['speaker']} (turns {turns})"
    if ev["type"] == StatusEvent.topic:
        return (f"{head} {ev['state']}  queue {ev['queue']}  overflows {ev['overflows']}  "
                f"dropped {ev['dropped_samples']} samples / {ev['dropped_windows']} windows")
    return head


def emit(ev: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(ev, sort_keys=True) if as_json else format_event(ev), flush=True)


def listen(conn: Connection, as_json: bool, topics: list[str] | None, count: int | None,
           seconds: float | None) -> int:
    """Print events until ``count`` of them or ``seconds`` (or Ctrl-C, which the caller
    turns into exit status 130). A daemon that is not running is an error at once."""
    probe(conn.events)  # a subscriber alone would wait for a daemon that may never come
    sock = conn.subscribe(topics)
    deadline = time.monotonic() + seconds if seconds else None
    seen = 0
    try:
        while count is None or seen < count:
            left = 0.5 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            ev = conn.receive(sock, min(left, 0.5))
            if ev is not None:
                emit(ev, as_json)
                seen += 1
    finally:
        sock.close()
    return 0
