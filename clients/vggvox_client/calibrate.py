"""``vggvox-client calibrate``: an open-set calibration fitted on the user's own recordings.

The same fit and check as the shipped calibrations (``vggvox.eval.fitcheck``,
which ``weights/calibrate_shipped.py`` runs on the development speech): the list's
speakers are split in halves by a hash of their names, the calibration is fitted
on one and checked on the other, and the file it writes is what the daemon's
``scoring.calibration`` or ``sources[].calibration`` names. In-process: no
daemon needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vggvox.embedder import Embedder
from vggvox.eval.fitcheck import (
    MIN_SPEAKERS,
    TAIL_SCORES,
    Half,
    fit_and_check,
    gather_half,
    split_recordings,
    tail_counts,
    tail_shortfall,
    too_little,
    write_calibration,
)
from vggvox.eval.lists import read_utterances
from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox_client.common import Skipped, output_file, report_skipped

HALF_SPEAKERS = MIN_SPEAKERS // 2


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``calibrate`` subcommand to an argparse subparsers object."""
    p: argparse.ArgumentParser = sub.add_parser(
        "calibrate", help="fit an open-set calibration on your own recordings of several "
                          "people, check it on a held-apart half, and write it",
        description="Fit the open-set calibration (false-accept rate -> threshold, score -> "
                    "confidence) on recordings of your own speakers, rooms and microphones. "
                    "The speakers are split in two halves by a hash of their names: the fit "
                    "sees one, the false-accept rates printed are measured on the other. "
                    f"Needs at least {MIN_SPEAKERS} speakers with 2 or more recordings each, "
                    "and enough speech (see docs/models.md); each speaker's first third of "
                    "recordings enrolls them, the rest are tested.")
    p.add_argument("--list", required=True, type=Path, metavar="LIST",
                   help="the recordings: 'filename speaker' lines (paths relative to the "
                        "list's folder; or a 'filename,speaker' CSV)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="model name or card path: the daemon's model.name (default "
                        "%(default)s)")
    p.add_argument("--out", type=output_file, metavar="FILE",
                   help="where to write it (default: <model>.calibration.yaml in the "
                        "current folder)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="ONNX Runtime threads (default %(default)s)")
    return p


def default_out(model: str) -> Path:
    """``<model>.calibration.yaml`` here: a card path gives its file's stem."""
    name = Path(model).stem if model.endswith((".yaml", ".yml")) else model
    return Path(f"{name}.calibration.yaml")


def refuse(where: Path, why: str) -> int:
    print(f"calibrate: {where}: {why}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        return refuse(args.list, f"--threads must be 1 or more, got {args.threads}")
    # The model first: a wrong name is a bad argument, whatever the list holds.
    card = load_card(resolve_card(args.model), calibration=False)  # its own is not used
    utts, bad = read_utterances(args.list)
    report_skipped([Skipped.from_list_error(e) for e in bad])
    why = too_little(utts)
    if why:
        return refuse(args.list, why)
    out = args.out or default_out(args.model)
    embedder = Embedder(card, threads=args.threads)
    parts = split_recordings(utts)
    sizes = {k: len({u.speaker for u in e}) for k, (e, _) in parts.items()}
    print(f"calibrate: {args.list}: {sizes['fit'] + sizes['held']} speakers; fitting "
          f"{card.name} on {sizes['fit']}, checking on the other {sizes['held']} (each "
          "speaker's first third of recordings enrolls them, the rest are tested)",
          flush=True)
    fit_half = _half(embedder, parts["fit"], args.list)
    if len(fit_half.voiceprints) < HALF_SPEAKERS:
        return refuse(args.list, _few_enrolled("fit", fit_half))
    if tail_shortfall(fit_half) > 1.0:
        return refuse(args.list, _short_tail(fit_half))
    held_half = _half(embedder, parts["held"], args.list)
    if len(held_half.voiceprints) < HALF_SPEAKERS:
        return refuse(args.list, _few_enrolled("held", held_half))
    fitted_on = (f"{len(fit_half.voiceprints)} speakers of {args.list.name} (the 'fit' "
                 "half, split by vggvox.eval.calibration_fit.split_speakers), by vggvox-client "
                 f"calibrate; checked on the other {len(held_half.voiceprints)}")
    print(f"fitting on {len(fit_half.voiceprints)} speakers "
          f"({len(fit_half.evidence)} pieces of evidence)", flush=True)
    try:
        cal, checks = fit_and_check(fit_half, held_half, card.name, fitted_on,
                                    lambda line: print(line, flush=True))
    except ValueError as e:  # a fit the data cannot carry, despite the counts
        return refuse(args.list, f"cannot fit a calibration on these recordings: {e}")
    header = (f"# Open-set calibration of {card.name}, written by vggvox-client calibrate\n"
              f"# from {args.list}. The 'check' tables are measured on the held-apart\n"
              "# speakers (informative). Use it with the daemon's scoring.calibration\n"
              "# (every source) or sources[].calibration (one source).\n")
    try:
        write_calibration(cal, checks, out, header)
    except OSError as e:
        print(f"calibrate: {out}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: set scoring.calibration: {out.resolve()} in vggvoxd.yaml "
          "(or a source's calibration)")
    return 0


def _half(embedder: Embedder, part: tuple[list[Any], list[Any]], where: Path) -> Half:
    half = gather_half(embedder, part[0], part[1], str(where))
    for line in half.problems:
        print(f"calibrate: skipped {line}", file=sys.stderr)
    return half


def _few_enrolled(name: str, half: Half) -> str:
    return (f"too little data: only {len(half.voiceprints)} speaker(s) of the {name} half "
            f"could be enrolled (each needs 3 s of speech in their first third of "
            f"recordings); each half needs at least {HALF_SPEAKERS}")


def _short_tail(half: Half) -> str:
    best = sorted(tail_counts(half), reverse=True)[:2]
    return (f"too little speech: the fit half's {len(half.voiceprints)} speakers give "
            f"{' and '.join(map(str, best))} stranger scores in their two most common "
            f"lengths of speech, and the fit needs {TAIL_SCORES} in each: about "
            f"{tail_shortfall(half):.1f} times as much speech, or more speakers (the scores "
            "grow with speech x speakers)")
