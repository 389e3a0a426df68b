"""``vggvox-client`` on the store's file, no daemon: provisional voices
(``vggvox.provisional``), the unknown voices ``identify --remember`` keeps.

- ``speakers --provisional``: each with when and where it was heard, and the
  enrolled speaker it comes close to, if any (a suggestion, never applied);
- ``forget LABEL`` and ``forget --provisional --older-than AGE``: erased, as
  ``remove`` erases an enrolled speaker;
- ``name unknown-7 alice``: when the store holds a provisional unknown-7, it is
  enrolled as alice here; otherwise ``name`` names a live voice in the daemon.

The store is the config's (found as the daemon and ``evaluate`` find it), or
``--store``. SQLite lets a running daemon share the file: a voice named here
bumps the store's generation, and the daemon reloads its voiceprints on its next
window. The parsers' part is cheap; the library is imported when a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggvox.errors import StoreError, VggvoxError
from vggvox.storeopen import parse_store_location, store_argument
from vggvox_client.common import plural, print_json

if TYPE_CHECKING:
    from vggvox.provisional import ProvisionalVoice
    from vggvox.settings import PipelineSettings
    from vggvox.storeapi import Store

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
PENDING = (" (another program holds a read of the store: its vectors leave the store's "
           "files when that read ends and the last connection to the store closes, or at the "
           "next removal)")
FINISH_S = 3.0
"""How long a command waits for a reader to let its erasure finish (it has no loop to
retry in, as the daemon has)."""


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", type=store_argument, metavar="FILE|URL",
                   help="the voiceprint store: a file, sqlite:PATH or a postgresql:// URL "
                        "(default: the config's, as the daemon's)")


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="MODEL", help="model name or card path the provisional "
                   "voices were heard with (default: the config's)")


def add_speakers_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provisional", action="store_true",
                   help="list the provisional voices (identify --remember) in the store file "
                        "instead, with when and where each was heard; no daemon needed")
    _store_arg(p)
    _model_arg(p)


def add_name_args(p: argparse.ArgumentParser) -> None:
    _store_arg(p)
    _model_arg(p)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forget", help="erase provisional voices (identify --remember) from "
                                      "the store file, as remove erases a speaker")
    p.add_argument("label", nargs="?", metavar="LABEL",
                   help="the provisional voice to erase, e.g. unknown-7")
    p.add_argument("--provisional", action="store_true",
                   help="forget provisional voices (needed with --older-than)")
    p.add_argument("--older-than", metavar="AGE",
                   help="every provisional voice last heard more than AGE ago: a number and a "
                        "unit, s, m, h, d or w (90m, 12h, 30d)")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def parse_age(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not m:
        raise VggvoxError(f"--older-than {text!r}: give a number and a unit, s, m, h, d or w "
                          "(90m, 12h, 30d)")
    return float(m.group(1)) * UNITS[m.group(2)]


# -- the store, and whether a command is ours ------------------------------------------------


def _settings() -> PipelineSettings:
    from vggvox.protocol.endpoints import find_config
    from vggvox.settings import load

    return load(find_config(None))


def _where(args: argparse.Namespace) -> str | Path:
    """The store named by --store, else the config's."""
    return parse_store_location(args.store) if args.store else _settings().store_location()


def _open(args: argparse.Namespace) -> Store | None:
    """The store (a file is never created here); None when there is no file."""
    from vggvox.storeopen import open_store

    where = _where(args)
    return open_store(where) if not isinstance(where, Path) or where.is_file() else None


def on_store(args: argparse.Namespace) -> bool:
    """Whether a ``speakers`` or ``name`` command is for the store file, not the daemon:
    ``speakers --provisional``, or ``name`` of a provisional voice the store holds (a
    store that is not there or cannot be read is the daemon's business, unless named)."""
    if args.command == "speakers":
        if not args.provisional and (args.store or args.model):
            raise VggvoxError("speakers: --store and --model go with --provisional (the "
                              "daemon lists the enrolled speakers of its own store)")
        return bool(args.provisional)
    from vggvox.provisional import ProvisionalVoices, label_number

    if args.command != "name" or label_number(args.unknown) is None:
        return False
    if args.store is not None:
        return True
    try:
        store = _open(args)
        return store is not None and (
            ProvisionalVoices.of_any_model(store).get(args.unknown) is not None)
    except VggvoxError:
        return False


def run(args: argparse.Namespace) -> int:
    return {"speakers": run_list, "name": run_promote, "forget": run_forget}[args.command](args)


def _card(args: argparse.Namespace, settings: PipelineSettings) -> Any:
    from vggvox.modelcard import load_card, resolve_card

    return load_card(resolve_card(args.model or settings.model.name))


def finish_erasure(store: Store) -> bool:
    """Retry a pending erasure for up to ``FINISH_S``; whether it is complete."""
    deadline = time.monotonic() + FINISH_S
    while store.erasure_pending and time.monotonic() < deadline:
        time.sleep(0.1)
        store.retry_erasure()  # at most once a second (erasure.RETRY_S)
    return not store.erasure_pending


# -- the commands ------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from vggvox.provisional import ProvisionalVoices

    settings, store = _settings(), _open(args)
    if store is None:
        return _print_list(args, _where(args), [], {}, " (no store there)")
    card = _card(args, settings)
    voices = ProvisionalVoices(store, card)
    found = voices.list()
    return _print_list(args, store.location, found, _suggestions(voices, found, settings, card))


def _suggestions(voices: Any, found: list[ProvisionalVoice], settings: PipelineSettings,
                 card: Any) -> dict[str, tuple[str, float]]:
    """Label -> (name, score) of the enrolled speaker each voice comes close to."""
    from vggvox.storebinding import ModelId

    if not found:
        return {}
    try:
        names, prints = voices.store.voiceprints(ModelId.of(card))
    except VggvoxError as e:  # another model's speakers: nothing to suggest
        print(f"vggvox-client: no suggestions: {e}", file=sys.stderr)
        return {}
    rule = settings.recognizer().scoring.rule(card)
    out = {}
    for v in found:
        close = None if voices.foreign(v) else voices.suggest(v.centroid, v.speech_s,
                                                              (names, prints), rule)
        if close is not None:
            out[v.label] = close
    return out


def _when(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _as_json(v: ProvisionalVoice, suggestion: tuple[str, float] | None) -> dict[str, Any]:
    from vggvox_client.daemon_cmds import iso

    return {**v.as_dict(), "first_heard": iso(v.first_heard), "last_heard": iso(v.last_heard),
            "places": [{"recording": p.recording, "heard": iso(p.heard), "start": p.start,
                        "end": p.end, "speech_s": p.speech_s} for p in v.places],
            "suggestion": None if suggestion is None else
            {"name": suggestion[0], "score": round(suggestion[1], 4)}}


def _print_list(args: argparse.Namespace, where: str | Path, found: list[ProvisionalVoice],
                suggestions: dict[str, tuple[str, float]], note: str = "") -> int:
    if args.json:
        print_json({"store": str(where), "provisional": [
            _as_json(v, suggestions.get(v.label)) for v in found]})
        return 0
    print(f"{plural(len(found), 'provisional voice')} in {where}{note}")
    for v in found:
        names = list(dict.fromkeys(Path(p.recording).name for p in v.places))
        heard_in = ", ".join(names[-3:]) + (f" and {len(names) - 3} more" if len(names) > 3
                                            else "")
        print(f"  {v.label:12s} {v.speech_s:7.1f} s of speech  first heard {_when(v.first_heard)}"
              f", last {_when(v.last_heard)}  in {heard_in}")
        if v.label in suggestions:
            name, score = suggestions[v.label]
            print(f"  {'':12s} close to {name} ({score:.2f}), not named: if it is them, "
                  f"vggvox-client name {v.label} {name}")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    from vggvox.provisional import ProvisionalVoices, label_number

    if (args.label is None) == (args.older_than is None):
        raise VggvoxError("forget: give a provisional voice's LABEL (unknown-N), or "
                          "--provisional --older-than AGE")
    if args.older_than is not None and not args.provisional:
        raise VggvoxError("forget --older-than erases provisional voices only: say so with "
                          "--provisional")
    if args.label is not None and label_number(args.label) is None:
        raise VggvoxError(f"{args.label!r} is not a provisional voice's label (unknown-N); an "
                          f"enrolled speaker is removed with: vggvox-client remove NAME")
    age = None if args.older_than is None else parse_age(args.older_than)
    store = _open(args)
    if store is None:
        raise StoreError(f"no store at {_where(args)}")
    voices = ProvisionalVoices.of_any_model(store)
    if age is None:
        if not voices.forget(args.label):
            raise StoreError(f"no provisional voice {args.label!r} in {store.location}")
        gone = [args.label.strip()]
    else:
        gone = voices.forget_older_than(age)
    pending = not finish_erasure(store)
    if args.json:
        print_json({"forgotten": gone, "erasure": "pending" if pending else "complete"})
    elif age is None:
        print(f"forgot {gone[0]}" + (PENDING if pending else ""))
    else:
        print(f"forgot {plural(len(gone), 'provisional voice')} last heard more than "
              f"{args.older_than.strip()} ago" + (f": {', '.join(gone)}" if gone else "")
              + (PENDING if pending else ""))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    from vggvox.provisional import ProvisionalVoices

    settings, store = _settings(), _open(args)
    if store is None:
        raise StoreError(f"no store at {args.store}")
    card = _card(args, settings)
    voices = ProvisionalVoices(store, card)
    voice = voices.get(args.unknown)
    if voice is None:
        raise StoreError(f"no provisional voice {args.unknown!r} in {store.location}")
    existed = any(s.name == args.name for s in store.speakers())
    info = voices.promote(voice.label, args.name, settings.recognizer().scoring.rule(card),
                          replace=args.replace, force=args.force)
    pending = not finish_erasure(store)
    action = "replaced" if existed and args.replace else "appended" if existed else "added"
    if args.json:
        print_json({"unknown": voice.label, "speaker": info.name, "action": action,
                    "speech_s": round(voice.speech_s, 3), "embeddings": info.embeddings,
                    "speaker_s": round(info.seconds, 3), "store": str(store.location),
                    "erasure": "pending" if pending else "complete"})
    else:
        recordings = len({p.recording for p in voice.places})
        print(f"{voice.label} is now {info.name} ({action}): {voice.speech_s:.1f} s of speech "
              f"heard in {plural(recordings, 'recording')}; {info.name} has "
              f"{plural(info.embeddings, 'embedding')}, {info.seconds:.1f} s. The provisional "
              "voice is erased" + (PENDING if pending else "."))
    return 0
