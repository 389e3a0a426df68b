"""``vggvox-client replay TARGET``: a file, or each file of a list, through the daemon.

What TARGET is, is decided by its content, never its suffix, by the one format
rule every command uses (``vggvox.audio``): audio if ``audio_info`` reads it
(WAV, FLAC, OGG, MP3, Opus, M4A, WebM, ...); else, if it is UTF-8 text, a list
of audio files, the first field of each line (up to a space, tab or comma) a
path relative to the list's folder; else neither, one line saying so.

Exit status: 0 when every file was replayed; 1 when a list's files were partly
replayed (each one left out named on stderr with its list and line); 2 when
nothing was (bad input, a refused request, no daemon), with one line prefixed
``vggvox-client: error:`` as every command's.

``replay_one`` sends one file through the daemon and returns its events, as the
command does for each file.
"""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggvox.audio import SAMPLE_RATE, NotAudioError, audio_info, load_audio, to_int16
from vggvox.errors import AudioError, VggvoxError
from vggvox.protocol.errors import UNREACHABLE
from vggvox.protocol.events import StatusEvent, replay_source
from vggvox.protocol.requests import ReplayRequest
from vggvox_client.common import Skipped, report_skipped
from vggvox_client.connection import ClientError, Connection
from vggvox_client.listen import emit
from vggvox_client.recording_outputs import RecordingOutputs, from_events

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".m4a",
                  ".webm")
"""Suffixes the help names as examples; what a file is, is decided by its content
(``vggvox.audio``'s format rule), never by its suffix."""
REPLAY_TIMEOUT_S = 120.0
"""Longest wait for a file's last events once all its audio is sent."""
CHUNK_S = 1.0


@dataclass(frozen=True)
class Entry:
    path: Path
    line: int | None = None
    """Its line in the list; None for a TARGET that is audio itself."""


def targets(target: Path) -> tuple[list[Entry], list[Skipped]]:
    """The files to replay, and the list's lines that name no file (left out). Bad
    input is one VggvoxError naming it, before the daemon is asked anything."""
    if target.is_dir():
        raise VggvoxError(f"replay {target}: is a folder; give an audio file or a text "
                          "list of audio files")
    if not target.exists():
        raise VggvoxError(f"replay {target}: no such file")
    try:
        audio_info(target)
        return [Entry(target)], []
    except NotAudioError as e:
        text = _text(target)
        if text is None:
            raise VggvoxError(f"replay {target}: neither audio nor a text list of audio "
                              f"files ({e.reason})") from None
    except AudioError as e:  # audio, but broken: the format rule's own line
        raise VggvoxError(f"replay {e}") from None
    return _list_entries(target, text)


def _text(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    return None if "\x00" in text else text


def _list_entries(target: Path, text: str) -> tuple[list[Entry], list[Skipped]]:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or line.strip().lower() == "filename,speaker":
            continue
        entries.append(Entry(target.parent / fields[0].split(",")[0], n))
    if not entries:
        raise VggvoxError(f"replay {target}: an empty list: it names no file")
    found = [e for e in entries if e.path.is_file()]
    missing = [Skipped(str(e.path), "file not found" if not e.path.exists() else
                       "not a regular file", e.line, str(target))
               for e in entries if not e.path.is_file()]
    if not found:
        first = entries[0]
        raise VggvoxError(f"replay {target}: neither audio nor a usable list of audio files: "
                          f"{first.path} (line {first.line}) is missing")
    return found, missing


def run(conn: Connection, target: Path, realtime: bool, as_json: bool,
        rttm: str | None = None) -> int:
    """The command: see the module's docstring for what it prints and returns."""
    entries, skipped = targets(target)
    out = RecordingOutputs(rttm, summary=False) if rttm is not None else None
    try:
        return _run(conn, target, entries, skipped, realtime, as_json, out)
    finally:
        if out is not None:
            out.close()


def _run(conn: Connection, target: Path, entries: list[Entry], skipped: list[Skipped],
         realtime: bool, as_json: bool, out: RecordingOutputs | None) -> int:
    if entries[0].line is None:  # one file: its failure is the command's
        _replay(conn, entries[0].path, realtime, as_json, out)
        return 0
    report_skipped(skipped)
    done = 0
    for e in entries:
        try:
            _replay(conn, e.path, realtime, as_json, out)
            done += 1
        except ClientError as err:
            if err.code == UNREACHABLE:
                raise  # no daemon: the next file would fare no better (exit 2, one line)
            report_skipped([Skipped(str(e.path), str(err), e.line, str(target))])
        except VggvoxError as err:
            reason = err.reason if isinstance(err, AudioError) else str(err)
            report_skipped([Skipped(str(e.path), reason, e.line, str(target))])
    total = len(entries) + len(skipped)
    if done == 0:
        raise VggvoxError(f"replay {target}: none of its {total} files could be replayed")
    return 0 if done == total else 1


def _replay(conn: Connection, path: Path, realtime: bool, as_json: bool,
            out: RecordingOutputs | None) -> None:
    t0 = time.monotonic()
    events = replay_one(conn, path, realtime, as_json, timeout=REPLAY_TIMEOUT_S)
    if out is not None:
        out.add(from_events(path, events, audio_info(path).seconds or 0.0))
    if not as_json:
        print(f"# {path}: {len(events)} events in {time.monotonic() - t0:.2f} s",
              file=sys.stderr)


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
            if ev["type"] == StatusEvent.topic and ev["state"] == "finished":
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
