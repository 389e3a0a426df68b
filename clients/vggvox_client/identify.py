"""``vggvox-client identify``: who spoke when in recordings, by name, in-process.

No daemon: the recordings go through the same streaming engine in this
process (or in ``--workers`` processes), then through what knowing the whole
file allows (``vggvox.recording.identify``). Outputs: a summary per recording
on stdout, RTTM (``--rttm``), JSON segments (``--json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.eval.openset import check_false_accept
from vggvox.modelcard import DEFAULT_MODEL, resolve_card
from vggvox.protocol.endpoints import find_config
from vggvox.recording.identify import IdentifyConfig
from vggvox.recording.overlap import DEFAULT_MODEL as OVERLAP_MODEL
from vggvox.recording.subtitles import write_subtitles
from vggvox.recording.transcript import read_transcript
from vggvox.settings import PipelineSettings, load
from vggvox.storeopen import store_argument
from vggvox_client import raybatch
from vggvox_client.common import Skipped, output_file, report_skipped
from vggvox_client.evaluate import load_voiceprints, recognizer_config
from vggvox_client.jobs import default_workers
from vggvox_client.recording_outputs import RecordingOutputs, is_folder
from vggvox_client.recordings import Job, Memory, identify_files


def add_parser(sub: Any, default_cache: Path | None) -> None:
    p = sub.add_parser(
        "identify", help="who spoke when in recordings, by name (in-process, no daemon)",
        description="Who spoke when in each recording: enrolled speakers by name, other "
                    "voices as unknown-1, unknown-2, ... (the same voice keeps its label over "
                    "the whole recording), with a score and a confidence on each segment.")
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING",
                   help="audio files (any format, rate and channels)")
    p.add_argument("--enroll-list", type=Path, metavar="LIST",
                   help="speakers to enroll for this run, from a 'filename speaker' list "
                        "(default: the store's enrolled speakers)")
    p.add_argument("--store", type=store_argument, metavar="FILE|URL",
                   help="voiceprint store (a file, sqlite:PATH or a postgresql:// URL): its "
                        "enrolled speakers (without --enroll-list) and "
                        "its remembered voices (--remember) (default: the config's, as the "
                        "daemon's)")
    p.add_argument("--remember", action="store_true",
                   help="keep this run's unknown voices in the store as provisional "
                        "voiceprints, so that the same voice gets the same label in the next "
                        "recording (never counted as enrolled; list them with speakers "
                        "--provisional, enroll one with name LABEL NAME, erase with forget)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="vggvoxd.yaml whose vad, window, scoring, turns and unknowns settings "
                        "to use (default: the daemon's own search order)")
    p.add_argument("--model", default=None,
                   help=f"model name or card path (default: the config's, else {DEFAULT_MODEL})")
    p.add_argument("--false-accept", type=float, metavar="RATE",
                   help="share of strangers the calibration may name (default: the config's "
                        "scoring.false_accept)")
    p.add_argument("--threshold", type=float, metavar="RAW",
                   help="name the best speaker at this raw score or above instead")
    _output_args(p)
    p.add_argument("--no-recluster", dest="recluster", action="store_false",
                   help="keep the streaming pass's unknown labels (default: cluster the "
                        "unknown voices again over the whole recording)")
    p.add_argument("--no-overlap", dest="overlap", action="store_false",
                   help="do not look for overlapped speech (default: the segmentation model "
                        "marks it, and both voices are labelled where the evidence allows)")
    p.add_argument("--live", action="store_true",
                   help="only the streaming pass: each turn as a live stream ends it (what "
                        "the daemon says, and replay --rttm writes), no decision taken again, "
                        "no re-clustering")
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="recordings identified at once, one process each (default: "
                        "%(default)s, one per core)")
    raybatch.add_argument(p, "identify the recordings")
    p.add_argument("--cache", type=Path, default=default_cache, metavar="DIR",
                   help="embedding cache folder, shared with batch-offline (default: "
                        "%(default)s)")
    p.add_argument("--no-cache", dest="cache", action="store_const", const=None,
                   help="embed every recording again")


def _output_args(p: argparse.ArgumentParser) -> None:
    # As text: a Path would drop the trailing / that says "a folder".
    p.add_argument("--rttm", metavar="PATH",
                   help="write RTTM: to this file (all recordings), to one FILE_ID.rttm per "
                        "recording in this folder (an existing folder, or a path ending in /), "
                        "or to stdout (-)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the segments, speakers and suggestions as JSON: to stdout "
                        "(no PATH, or -), a file, or one FILE_ID.json per recording in a folder")
    p.add_argument("--transcript", type=Path, metavar="FILE",
                   help="a transcript of the (one) recording with times: Whisper or WhisperX "
                        "JSON, SRT or WebVTT; each word gets the speaker who speaks most "
                        "over it (with --srt, --vtt, --words)")
    p.add_argument("--srt", type=output_file, metavar="FILE",
                   help="write SubRip subtitles, 'Name: ' where the speaker changes")
    p.add_argument("--vtt", type=output_file, metavar="FILE",
                   help="write WebVTT subtitles with <v Name> voice spans")
    p.add_argument("--words", type=output_file, metavar="FILE",
                   help="write the transcript's words as JSON, each with its speaker (words "
                        "in overlapped speech or without a decision are marked, not guessed)")
    p.add_argument("--timeline", action="store_true",
                   help="also print each segment (start, end, speaker, confidence)")


def _settings(args: argparse.Namespace) -> PipelineSettings:
    if args.false_accept is not None:
        check_false_accept(args.false_accept)
    if args.workers < 1:
        raise VggvoxError(f"--workers must be >= 1, got {args.workers}")
    if args.ray:
        raybatch.require()
    if args.cache is not None and args.cache.exists() and not args.cache.is_dir():
        raise VggvoxError(f"--cache {args.cache}: not a folder")
    if args.rttm == "-" and args.json == "-":
        raise VggvoxError("--rttm - and --json to stdout cannot share it: give one a file")
    for opt, text in (("--rttm", args.rttm), ("--json", args.json)):
        # Checked before an hour of work, not after.
        if text is not None and text != "-" and not is_folder(text):
            folder = Path(text).parent
            if not folder.is_dir():
                raise VggvoxError(f"{opt} {text}: folder {folder} does not exist")
    subtitles = args.srt or args.vtt or args.words
    if bool(args.transcript) != bool(subtitles):
        raise VggvoxError("--transcript goes with --srt, --vtt or --words, and they with it")
    if args.transcript and len(args.recordings) != 1:
        raise VggvoxError(f"--transcript is the transcript of one recording; "
                          f"{len(args.recordings)} were given")
    return load(find_config(args.config))


def build_job(args: argparse.Namespace, settings: PipelineSettings) -> Job:
    card_path = resolve_card(args.model or settings.model.name)
    embedder = Embedder.from_card(card_path, threads=settings.model.threads)
    enrolled = load_voiceprints(args, embedder, settings)
    config = IdentifyConfig(recognizer=recognizer_config(args, settings),
                            recluster=args.recluster, live=args.live)
    overlap = OVERLAP_MODEL if args.overlap and not args.live else None
    return Job(embedder.card, card_path, enrolled, config, args.cache, overlap,
               embedder=embedder)


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    # Read first: a bad transcript is one line now, before any model loads.
    transcript = read_transcript(args.transcript) if args.transcript else None
    job = build_job(args, settings)
    if not len(job.voiceprints):
        where = (f"{args.enroll_list}: no speaker could be enrolled" if args.enroll_list
                 else "the store has no enrolled speaker")
        print(f"identify: {where}: every voice will be unknown", file=sys.stderr)
    sinks = RecordingOutputs(args.rttm, args.json, args.timeline)
    memory = Memory.open(job, args.store or settings.store_location()) if args.remember else None
    skipped: list[Skipped] = []
    done = 0
    for out in identify_files(args.recordings, job, args.workers, progress=True,
                              ray=args.ray):
        if out.result is None:
            skipped.append(Skipped(str(out.path), out.reason))
            continue
        done += 1
        result = memory.remember(out.result) if memory is not None else out.result
        sinks.add(result)
        if transcript is not None:
            try:
                write_subtitles(result, transcript, srt_path=args.srt, vtt_path=args.vtt,
                                json_path=args.words)
            except OSError as e:
                raise VggvoxError(f"{e.filename}: cannot write: {e.strerror or e}") from None
    sinks.close()
    report_skipped(skipped)
    return 0 if done else 1
