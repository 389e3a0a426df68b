"""``vggvox-client`` commands that go through a running vggvoxd: enroll, speakers,
remove, name, status, calibration, listen and replay (their parsers, and what they
print)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggvox.protocol.events import EVENT_TYPES
from vggvox.protocol.requests import (
    MAX_REQUEST_BYTES,
    CalibrationRequest,
    CalibrationResetRequest,
    ListRequest,
    RemoveRequest,
    StatusRequest,
)
from vggvox_client import fleet, voices
from vggvox_client.common import plural, print_json

if TYPE_CHECKING:
    from vggvox_client.connection import Connection

TOPICS = tuple(EVENT_TYPES)
"""The event topics a subscriber may ask for, from the daemon's own event classes."""

DEFAULT_TIMEOUT = 10.0
"""Seconds to wait for a reply when --timeout is not given (enroll waits longer)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _speaker_parsers(sub)
    _daemon_parsers(sub)


def _speaker_parsers(sub: argparse._SubParsersAction) -> None:
    """enroll, speakers, remove, name."""
    p = sub.add_parser("enroll", help="enroll a speaker through the running daemon")
    p.add_argument("name", help="the speaker's name (any Unicode; look-alikes of enrolled "
                                "names are refused)")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE",
                   help="clips of the speaker: any format, rate and channels; at least the "
                        "daemon's enroll.min_speech_s of speech in all (default 3 s)")
    p.add_argument("--live", type=float, metavar="SECONDS",
                   help="record SECONDS from the daemon's microphone instead of files")
    p.add_argument("--source", metavar="NAME",
                   help="with --live: which of the daemon's sources to record (the names of "
                        "its config's sources: list; default: the first). With files: the "
                        "source they were recorded on, so that its room learns from them")
    p.add_argument("--replace", action="store_true",
                   help="replace the speaker's voiceprint (default: add the clips to it)")
    p.add_argument("--force", action="store_true",
                   help="store clips that do not sound like the speaker's voiceprint or like "
                        "each other, or a name that looks like another speaker's (logged)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p = sub.add_parser("speakers", help="list enrolled speakers (--provisional: the voices "
                                        "identify --remember kept)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    voices.add_speakers_args(p)
    p = sub.add_parser("remove", help="remove a speaker (from memory and from every file)")
    p.add_argument("name", help="the enrolled speaker's name")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    voices.add_parser(sub)  # forget: provisional voices, in the store file
    p = sub.add_parser("name", help="enroll an unknown voice (unknown-N) under a name: its "
                                    "past turns (listed) and future turns are that speaker")
    p.add_argument("unknown", help="the label the daemon gave the voice, e.g. unknown-2; or a "
                                   "provisional voice's (identify --remember), when the store "
                                   "file holds one: it is enrolled there, no daemon needed")
    p.add_argument("name", help="the speaker's name")
    p.add_argument("--source", help="the stream it was heard on, as status shows it (needed "
                                    "only if several streams have that label)")
    p.add_argument("--replace", action="store_true",
                   help="replace the voiceprint of an enrolled speaker of that name")
    p.add_argument("--force", action="store_true",
                   help="enroll the voice even if it does not sound like the speaker's "
                        "voiceprint, or the name looks like another speaker's (logged)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    voices.add_name_args(p)  # a provisional voice in the store file is named there


def _daemon_parsers(sub: argparse._SubParsersAction) -> None:
    """status, calibration, listen, replay."""
    p = sub.add_parser("status", help="the daemon's state, model, speakers, stages and counters")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p = sub.add_parser("calibration", help="each source's open-set rule as its room has moved "
                                           "it, and what that rests on; or reset it")
    p.add_argument("action", choices=("show", "reset"), nargs="?", default="show",
                   help="show (default), or reset: back to the calibration as fitted "
                        "(forget what was heard, and the clips enrolled there so far)")
    p.add_argument("--source", metavar="NAME", help="only this source (default: every one)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p = sub.add_parser("listen", help="print the daemon's events")
    p.add_argument("--json", action="store_true", help="print one JSON object a line")
    p.add_argument("--topic", action="append", dest="topics", choices=TOPICS, metavar="TOPIC",
                   help=f"only this topic (repeatable): {', '.join(TOPICS)}")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events "
                   "(default: run until Ctrl-C)")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p = sub.add_parser("replay", help="send audio through the daemon's pipeline, print events")
    p.add_argument("target", type=Path, metavar="TARGET",
                   help="an audio file, or a list of audio files (below)")
    p.add_argument("--realtime", action="store_true",
                   help="send at real-time pace (default: as fast as the pipeline takes it)")
    p.add_argument("--json", action="store_true", help="print the events, one JSON object a line")
    p.add_argument("--rttm", metavar="PATH",
                   help="also write who spoke when from the daemon's final turns as RTTM: to "
                        "this file, or one FILE_ID.rttm per file in a folder (an existing one, "
                        "or a path ending in /); the same lines as identify --live")


TIME_FIELDS = ("updated", "created", "last_sync")
"""Unix times in replies that --json shows as ISO 8601."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def data(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply's data for people and scripts: without the protocol's ``ok`` field, and
    times in ISO 8601 (UTC) rather than Unix seconds."""
    def convert(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: iso(x) if k in TIME_FIELDS and isinstance(x, (int, float))
                    else convert(x) for k, x in v.items()}
        if isinstance(v, list):
            return [convert(x) for x in v]
        return v

    return {k: convert(v) for k, v in reply.items() if k != "ok"}


def format_status(s: dict[str, Any]) -> str:
    """A status reply as a table."""
    speakers = s.get("speakers")
    rows = [("node", s.get("node") or None), ("state", s.get("state")),
            ("source", s.get("source")),
            ("stream", f"{s.get('stream_s', 0.0):.1f} s"), ("model", s.get("model")),
            ("scoring", s.get("scoring")), ("store", s.get("store")),
            ("speakers", speakers if not isinstance(speakers, int)
             else plural(speakers, "speaker")),
            ("windows", s.get("windows")), ("queue", s.get("queue")),
            ("replays", s.get("replays"))]
    lines = [f"{k:10s} {v}" for k, v in rows if v is not None]
    for name, src in (s.get("sources") or {}).items():
        room = src.get("room") or {}
        if room.get("adapts"):  # the rule this source decides with now, and its grounds
            lines.append(f"{'room':10s} {name}: {room['rule']}; from "
                         f"{plural(room['scores'], 'stranger score')} on "
                         f"{room['speech_s']:.0f} s of its speech")
    stages = s.get("stages") or {}
    search = stages.get("search") or {}
    if search.get("mode"):
        built = f", built in {search['build_s']} s" if search.get("build_s") is not None else ""
        lines.append(f"{'search':10s} {search['mode']} (from {search.get('index_above')} "
                     f"voiceprints on, an index{built})")
    if stages:
        lines.append("stages")
        for name, h in stages.items():
            extra = f"  last error: {h['last_error']}" if h.get("last_error") else ""
            lines.append(f"  {name:24s} {h.get('state', '?'):9s} "
                         f"{plural(h.get('failures', 0), 'failure')}{extra}")
    lines.append("counters")
    for key in ("overflows", "dropped_samples", "dropped_windows", "dropped_events"):
        lines.append(f"  {key.replace('_', ' '):24s} {s.get(key, 0)}")
    sources = s.get("sources") or {}
    if len(sources) > 1:  # one source: the lines above are all of it
        lines.append("sources")
        for name, src in sources.items():
            lines.append(f"  {name:24s} {src.get('state', '?'):9s} "
                         f"{src.get('stream_s', 0.0):.1f} s, "
                         f"{plural(src.get('dropped_windows', 0), 'dropped window')}, "
                         f"{plural(src.get('overflows', 0), 'overflow')}")
    conns = s.get("connections") or {}
    if conns:
        lines.append("connections")
        for name, c in conns.items():
            lines.append(f"  {name:24s} {c.get('open', 0)} open (cap {c.get('cap')}), "
                         f"{'accepting' if c.get('accepting') else 'not accepting'}, "
                         f"{plural(c.get('sheds', 0), 'shed')}")
    unknowns = s.get("unknowns") or {}
    for source, labels in unknowns.items():
        if labels:
            lines.append(f"unknown voices on {source}: {', '.join(sorted(labels))}")
    return "\n".join(lines)


def format_rooms(sources: dict[str, Any]) -> str:
    """A calibration reply's rooms, two lines each."""
    lines = []
    for name, r in sources.items():
        lines.append(f"{name}: {r['rule']}")
        if not r.get("adapts"):
            lines.append("  fixed (scoring.adapt is false, or the rule is not calibrated)")
            continue
        lines.append(f"  from {plural(r['scores'], 'stranger score')} on {r['speech_s']:.1f} s "
                     f"of this channel's speech: {r['enrolled_scores']} from enrollment clips, "
                     f"{r['heard_scores']} from {plural(r['heard_turns'], 'named turn')}")
    return "\n".join(lines)


# -- the commands: each gets the connection and its arguments --------------------------


def run_calibration(conn: Connection, args: argparse.Namespace) -> int:
    if args.action == "show":
        shown = conn.call(CalibrationRequest(source=args.source))
        wire, sources, head = shown.to_wire(), shown.sources, []
    else:
        reset = conn.call(CalibrationResetRequest(source=args.source))
        wire, sources = reset.to_wire(), reset.sources
        head = [f"reset: {', '.join(reset.reset) or 'no source'}"]
    if args.json:
        print_json(data(wire))
    else:
        print("\n".join([*head, format_rooms(sources)]))
    return 0


def run_status(conn: Connection, args: argparse.Namespace) -> int:
    reply = data(conn.send(StatusRequest()))
    if args.json:
        print_json(reply)
    else:
        print(fleet.format_hub_status(reply) if reply.get("hub") else format_status(reply))
    return 0


def run_remove(conn: Connection, args: argparse.Namespace) -> int:
    reply = conn.call(RemoveRequest(name=args.name))
    if args.json:
        print_json({"removed": reply.removed, "erasure": reply.erasure})
    else:
        print(f"removed {args.name}" + ("" if reply.erasure != "pending" else
              " (its voiceprint leaves the store's files once another program reading "
              "the store ends; vggvoxd finishes the erasure then)"))
    return 0


def run_speakers(conn: Connection, args: argparse.Namespace) -> int:
    reply = conn.call(ListRequest())
    if args.json:
        print_json(data(reply.to_wire()))
        return 0
    print(f"model {reply.model}, {plural(len(reply.speakers), 'speaker')}")
    for s in reply.speakers:
        print(f"  {s.name:24s} {plural(s.embeddings, 'embedding', 3)}  "
              f"{s.seconds:7.1f} s of speech" + (
                  f"  DAMAGED, not identified ({s.damaged}; enroll --replace "
                  "repairs it)" if s.damaged else ""))
    return 0


def run_enroll(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client import enroll

    return enroll.run_enroll(conn, args, MAX_REQUEST_BYTES, data)


def run_name(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client import enroll

    return enroll.run_name(conn, args, data)


def run_listen(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client.listen import listen

    return listen(conn, args.json, args.topics, args.count, args.seconds)


def run_replay(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client import replay

    return replay.run(conn, args.target, args.realtime, args.json, args.rttm)


RUNS: dict[str, Callable[[Connection, argparse.Namespace], int]] = {
    "enroll": run_enroll, "speakers": run_speakers, "remove": run_remove, "name": run_name,
    "status": run_status, "calibration": run_calibration, "listen": run_listen,
    "replay": run_replay}
"""Each command, and what runs it."""
NAMES = tuple(RUNS)


def connect(args: argparse.Namespace) -> Connection:
    """The daemon, as the global options (--control, --events, --timeout, the keys) say:
    every command that goes through it, a bridge too, connects here."""
    from vggvox_client.connection import Connection

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    return Connection(args.control, args.events, timeout, args.server_key, args.key)


def cmd_daemon(args: argparse.Namespace) -> int:
    if voices.on_store(args):  # speakers --provisional, name of a provisional voice
        return voices.run(args)
    return RUNS[args.command](connect(args), args)
