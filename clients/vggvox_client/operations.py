"""Client commands that go through the running daemon: enroll, listen, and one
file's replay (``replay.py`` is the command, lists and the format rule).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16
from vggvox.errors import VggvoxError
from vggvox.protocol.events import replay_source
from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.requests import EnrollRequest, ReplayRequest
from vggvox_client.connection import ClientError, Connection, probe

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a",
                  ".webm")
"""Suffixes the help names as examples; what a file is, is decided by its content
(``vggvox.audio``'s format rule), never by its suffix."""
CHUNK_S = 1.0
ENROLL_TIMEOUT_S = 60.0
"""Default wait for the reply to an enrollment of files: the daemon embeds them all first."""
ENROLL_AFTER_LIVE_S = 30.0
"""Default wait for the reply to a live enrollment, after its recording."""


def format_event(ev: dict[str, Any]) -> str:
    head = f"{ev['source']} [{ev['t_start']:7.2f} - {ev['t_end']:7.2f}] {ev['type']:12s}"
    if ev["type"] == "speaker":
        who = ev["speaker"] if ev["speaker"] is not None else "(unknown)"
        best = ", ".join(f"{n} {s:.2f}" for n, s in ev["top"][:3])
        return f"{head} {who:16s} score {ev['score']:.3f}  top: {best}"
    if ev["type"] == "turn":
        who = ev["speaker"] or ev.get("unknown") or "(unknown)"
        state = "final" if ev["final"] else "open"
        return (f"{head} #{ev['turn']:<4d} {who:16s} score {ev['score']:.3f}  "
                f"confidence {ev['confidence']:.2f}  {state}")
    if ev["type"] == "enrollment":
        return f"{head} {ev['action']} {ev['speaker']}"
    if ev["type"] == "named":
        turns = ", ".join(f"#{t}" for t in ev["turns"]) or "none closed"
        return f"{head} {ev['unknown']} is {ev['speaker']} (turns {turns})"
    if ev["type"] == "status":
        return (f"{head} {ev['state']}  queue {ev['queue']}  overflows {ev['overflows']}  "
                f"dropped {ev['dropped_samples']} samples / {ev['dropped_windows']} windows")
    return head


def emit(ev: dict[str, Any], as_json: bool) -> None:
    print(json.dumps(ev, sort_keys=True) if as_json else format_event(ev), flush=True)


def enroll(conn: Connection, name: str, files: list[Path], live: float | None,
           replace: bool, max_bytes: int, force: bool = False,
           timeout: float | None = None, source: str | None = None,
           request: str | None = None, clips: list[bytes] | None = None) -> dict[str, Any]:
    """Enroll files (or a live recording); ``force`` stores clips that do not match the
    speaker's voiceprint or each other, and a name that looks like another's.

    ``timeout`` bounds the wait for the daemon's reply (after the recording, for
    ``live``); by default it is long (60 s, or 30 s after a recording), as the daemon
    embeds all the audio before it answers. ``source`` names the daemon's live source
    to record from (default: its first); with files, the source they were recorded
    on, which tells its room how strangers score there (vggvox.rooms). ``request`` is
    the client's id for it, which a ``cancel`` names; ``clips``: the files' audio,
    already read (``load_clips``)."""
    if live is not None:
        wait = live + (ENROLL_AFTER_LIVE_S if timeout is None else timeout)
        return conn.send(EnrollRequest(name=name, live=float(live), replace=replace, force=force,
                                       source=source, request=request), wait)
    if clips is None:
        clips = load_clips(files, max_bytes)
    log.debug("enroll %r: sending request %s, %.1f s of audio", name, request,
              sum(len(c) for c in clips) / 2 / SAMPLE_RATE)
    try:
        return conn.send(EnrollRequest(name=name, audio=clips, replace=replace, force=force,
                                       source=source, request=request),
                         ENROLL_TIMEOUT_S if timeout is None else timeout)
    except ClientError as e:
        raise ClientError(with_files(str(e), files), e.code) from None


def load_clips(files: list[Path], max_bytes: int) -> list[bytes]:
    """The files' audio as request PCM; a VggvoxError if it exceeds a request's size."""
    clips = [to_pcm(load_audio(f)) for f in files]
    size = sum(len(c) for c in clips)
    if size > max_bytes:
        raise VggvoxError(f"{size} bytes of audio exceed the {max_bytes}-byte request limit; "
                          "enroll with fewer or shorter files")
    return clips


def with_files(error: str, files: list[Path]) -> str:
    """The daemon names clips by their place in the request (clip0, clip1, ...): say
    which files those are."""
    named = sorted({int(i) for i in re.findall(r"\bclip(\d+)\b", error) if int(i) < len(files)})
    if not named:
        return error
    return error + " [" + ", ".join(f"clip{i} = {files[i]}" for i in named) + "]"


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


def replay_one(conn: Connection, path: Path, realtime: bool, as_json: bool,
               timeout: float, echo: bool = True, label: str | None = None
               ) -> list[dict[str, Any]]:
    """Send one file through the daemon's pipeline; return its events (printed if ``echo``).
    ``label`` names the stream (default: the file's name, made printable)."""
    samples = to_int16(load_audio(path))
    session = secrets.token_hex(16)  # the key to the session: never sent anywhere else
    if label is None:
        label = "".join(c if c.isprintable() and c != " " else "_" for c in path.name)[:64]
    source = replay_source(session, label)
    sock = conn.subscribe()
    time.sleep(0.2)  # let the subscription reach the publisher before any event
    events: list[dict[str, Any]] = []

    finished: dict[str, Any] = {}

    def drain(wait: float) -> None:
        """Collect (and print) this replay's events until none is waiting; note the end."""
        while not finished and (ev := conn.receive(sock, wait)) is not None:
            wait = 0
            if ev["source"] != source:
                continue
            if ev["type"] == "status" and ev["state"] == "finished":
                finished.update(ev)
                return
            events.append(ev)
            if echo:
                emit(ev, as_json)

    chunk = int(CHUNK_S * SAMPLE_RATE)
    t0 = time.monotonic()
    try:
        pos = 0
        while pos < len(samples) or pos == 0:
            part = samples[pos : pos + chunk]
            final = pos + len(part) >= len(samples)
            reply = conn.call(ReplayRequest(session=session, label=label, audio=part.tobytes(),
                                            final=final))
            pos += reply.accepted
            if reply.accepted < len(part):
                time.sleep(0.01)  # the daemon's buffer is full: let the pipeline catch up
            elif realtime:
                time.sleep(max(0.0, t0 + pos / SAMPLE_RATE - time.monotonic()))
            drain(0)
            if final and reply.accepted == len(part):
                break
        deadline = time.monotonic() + timeout
        while not finished:
            if time.monotonic() > deadline:
                raise ClientError(f"replay of {path} did not finish within {timeout:g} s")
            drain(0.2)
    finally:
        sock.close()
    if finished.get("dropped_windows"):
        # Replays are lossless by design; say so loudly if that ever breaks.
        print(f"replay: warning: {path}: the daemon dropped {finished['dropped_windows']} "
              "windows", file=sys.stderr)
    return events
