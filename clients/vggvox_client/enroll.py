"""``vggvox-client enroll`` and ``name``: each request with an id, Ctrl-C cancels it.

An enrollment can take a minute (the daemon embeds all its audio first). If its
user presses Ctrl-C meanwhile, the client sends ``cancel`` with the request's id
(``request``, random, sent with every enroll and name) and says plainly what
became of it: cancelled, nothing stored; or already stored, and how to undo
it; or that the daemon could not be asked. The exit status is 130 either way.

``enroll`` is the request itself (files or a live recording), as the command and
the demo send it.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import sys
from pathlib import Path
from typing import Any

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.errors import VggvoxError
from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.requests import CancelRequest, EnrollRequest, NameRequest
from vggvox_client.common import plural, print_json
from vggvox_client.connection import ClientError, Connection

log = logging.getLogger(__name__)

ENROLL_TIMEOUT_S = 60.0
"""Default wait for the reply to an enrollment of files: the daemon embeds them all first."""
ENROLL_AFTER_LIVE_S = 30.0
"""Default wait for the reply to a live enrollment, after its recording."""
CANCEL_TIMEOUT_S = 12.0
"""How long Ctrl-C waits for the daemon's answer to ``cancel``: one that comes while the
enrollment's store write waits for another process's lock is answered when the write
ends, which SQLite's busy time-out (10 s) bounds."""
INTERRUPTED = 130


def new_request_id() -> str:
    return secrets.token_hex(8)  # 16 printable characters: the daemon takes 8 to 64


def run_enroll(conn: Connection, args: argparse.Namespace, max_bytes: int,
               data: Any) -> int:
    if (args.live is None) == (not args.files):
        raise VggvoxError("enroll needs either FILE... or --live SECONDS")
    try:
        clips = None if args.live is not None else load_clips(args.files, max_bytes)
    except KeyboardInterrupt:
        print("\nvggvox-client: interrupted before anything was sent: nothing was stored",
              file=sys.stderr)
        return INTERRUPTED
    rid = new_request_id()
    try:  # from here on the daemon may be storing it: Ctrl-C asks what became of it
        reply = enroll(conn, args.name, args.files, args.live, args.replace, max_bytes,
                       args.force, timeout=args.timeout, source=args.source,
                       request=rid, clips=clips)
    except KeyboardInterrupt:
        return interrupted(conn, rid, f"the enrollment of {args.name}")
    if args.json:
        print_json(data(reply))
    else:
        print(enroll_summary(reply))
    return 0


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


def run_name(conn: Connection, args: argparse.Namespace, data: Any) -> int:
    rid = new_request_id()
    try:
        reply = conn.call(NameRequest(unknown=args.unknown, name=args.name, replace=args.replace,
                                      force=args.force, request=rid, source=args.source or None))
    except KeyboardInterrupt:
        return interrupted(conn, rid, f"naming {args.unknown} {args.name}")
    if args.json:
        print_json(data(reply.to_wire()))
    else:
        print(f"{reply.unknown} on {reply.source} is now {reply.speaker}: "
              f"{reply.speech_s:.1f} s of its speech enrolled; its turns "
              f"{', '.join(map(str, reply.turns)) or '(none closed yet)'}")
    return 0


def enroll_summary(reply: dict[str, Any]) -> str:
    """An enroll reply in words. An append's ``speech_s`` is the new clips' alone: the
    speaker's totals (``added``, ``speaker_s``, from daemons that send them) are said
    apart, so that the clip's seconds are not read as the speaker's."""
    who, model = reply["speaker"], reply.get("model", "?")
    embeddings, speech = plural(reply["embeddings"], "embedding"), reply["speech_s"]
    if reply.get("action") == "appended":
        head = f"appended to {who} (already enrolled; --replace starts over)"
        if reply.get("added") is not None and reply.get("speaker_s") is not None:
            return (f"{head}: +{plural(reply['added'], 'embedding')}, {speech:.1f} s of "
                    f"speech; now {embeddings}, {reply['speaker_s']:.1f} s in all ({model})")
        return f"{head}: {speech:.1f} s of speech added; now {embeddings} ({model})"
    verb = "replaced" if reply.get("action") == "replaced" else "enrolled"
    return f"{verb} {who}: {embeddings}, {speech:.1f} s of speech after VAD ({model})"


def interrupted(conn: Connection, rid: str, what: str) -> int:
    """Ctrl-C while an enroll or name request was under way: cancel it, say what became
    of it, exit 130."""
    print(file=sys.stderr)  # end the line the terminal's ^C is on
    try:
        answer = conn.send(CancelRequest(request=rid), CANCEL_TIMEOUT_S)
    except ClientError as e:
        print(f"vggvox-client: interrupted; could not ask vggvoxd whether {what} went "
              f"through ({e}); vggvox-client speakers shows who is enrolled", file=sys.stderr)
        return INTERRUPTED
    print(f"vggvox-client: interrupted: {outcome(answer, what)}", file=sys.stderr)
    return INTERRUPTED


def outcome(answer: dict[str, Any], what: str) -> str:
    """The ``cancel`` op's answer in words."""
    state = answer.get("state")
    if state == "cancelled":
        return "cancelled: nothing was stored"
    if state == "done":
        who = answer.get("speaker", "?")
        if answer.get("action") == "appended":
            return (f"{what} had already gone through: the clips were appended to {who}'s "
                    f"voiceprint (vggvox-client enroll {who} FILE... --replace starts it over "
                    "from the clips you choose)")
        if answer.get("action") == "replaced":
            return (f"{what} had already gone through: {who}'s voiceprint was replaced "
                    f"(vggvox-client remove {who} removes it)")
        return (f"{what} had already gone through: {who} is enrolled (vggvox-client remove "
                f"{who} undoes it)")
    return (f"vggvoxd does not know the request, so it cannot say whether {what} went "
            "through (it may have ended long ago); vggvox-client speakers shows who is enrolled")
