"""``vggvox-client``: the command line.

Exit status: 0 when something was scored, 1 when nothing could be, 2 for bad
arguments (argparse) or a setup error (unknown model, altered model file), 130
after Ctrl-C. A reader that stops reading (``| head -1``) ends the command
quietly with status 0: it got what it asked for.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from platformdirs import user_cache_dir

from vggvox import __version__, logsetup
from vggvox.errors import VggvoxError
from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox.scoring import METRICS, Scorer
from vggvox.search import SearchSettings
from vggvox.storeopen import store_argument
from vggvox.stream.recognizer import ScoringConfig
from vggvox_client import (
    bridges,
    calibrate,
    conversations,
    daemon_cmds,
    evaluate,
    helptext,
    hub,
    identify,
    keygen,
    raybatch,
    satellite,
    storecmd,
    voices,
)
from vggvox_client.common import (
    Skipped,
    add_rule_args,
    endpoint,
    flush_stdout,
    output_file,
    print_json,
    reader_gone,
    report_skipped,
    stdout_is_pipe,
)
from vggvox_client.jobs import default_workers

log = logging.getLogger("vggvox_client")


def default_cache() -> Path | None:
    """The user's cache folder for embeddings; None (no cache) for a user with no home:
    systemd gives a DynamicUser service (the bridges) no HOME."""
    try:
        return Path(user_cache_dir("vggvox"))
    except RuntimeError:
        return None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="shipped model name (campplus-int8, campplus, ge2e) or the path of a "
                        f"model card (.yaml) (default {DEFAULT_MODEL})")
    p.add_argument("--metric", choices=METRICS, default="cosine",
                   help="how embeddings are compared (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary to stdout")


def _identify_args(p: argparse.ArgumentParser, batch: bool) -> None:
    p.add_argument("--enroll-list", required=True, type=Path, metavar="LIST",
                   help="the utterances each speaker is enrolled from (format below)")
    p.add_argument("--test-list", required=True, type=Path, metavar="LIST",
                   help="the utterances to identify, with their true speaker (format below)")
    p.add_argument("--out", required=True, type=output_file, metavar="FILE",
                   help="results to write: one CSV row per scored test utterance")
    p.add_argument("--root", type=Path, metavar="DIR",
                   help="folder the list paths are relative to (default: each list's folder)")
    p.add_argument("--max-sec-enroll", type=float, metavar="S",
                   help="use at most S seconds of each enrollment file")
    p.add_argument("--store", type=store_argument, metavar="FILE|URL",
                   help="keep the enrolled voiceprints in this store: a SQLite file, "
                        "sqlite:PATH or a postgresql:// URL (default: a temporary file)")
    p.add_argument("--workers", type=int, default=default_workers() if batch else 1, metavar="N",
                   help="embedding processes (default: %(default)s)")
    p.add_argument("--cache", type=Path, default=default_cache() if batch else None,
                   metavar="DIR", help="embedding cache folder, shared with verify (default: "
                   + ("%(default)s)" if batch else "none)"))
    p.add_argument("--open-set", action="store_true",
                   help="score test utterances of speakers who are not enrolled as strangers "
                        "(closed set: they are skipped) and decide each: a name or unknown; "
                        "--false-accept, --threshold and --det need it")
    p.add_argument("--rooms", action="store_true",
                   help="also score each room apart, with its own enrolled speakers: a "
                        "list's third column, or the first folder of each path (needs "
                        "--open-set)")
    add_rule_args(p, f"needs --open-set; default {ScoringConfig.false_accept}, as the daemon's",
                  "the test utterances' best scores (needs --open-set)")
    if batch:
        _search_args(p)
        raybatch.add_argument(p, "embed")
    _model_args(p)


def _search_args(p: argparse.ArgumentParser) -> None:
    """batch-offline's very large enrolled sets: vggvox.search.SearchSettings."""
    d = SearchSettings()
    g = p.add_argument_group("very large enrolled sets (see below)")
    g.add_argument("--index-above", type=int, default=d.index_above, metavar="N",
                   help="search through an approximate index, re-scored exactly, from N "
                        "enrolled speakers on (at least 1000; default %(default)s)")
    g.add_argument("--nprobe", type=int, default=d.nprobe, metavar="N",
                   help="index lists scanned per test (default %(default)s)")
    g.add_argument("--rescore", type=int, default=d.rescore, metavar="N",
                   help="candidates per test re-scored exactly; ranks are known up to N "
                        "(default %(default)s)")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
GLOBAL_DEFAULTS = {"log_level": "WARNING", "control": None, "events": None, "timeout": None,
                   "server_key": None, "key": None}


def _global_options(p: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after its name. Their defaults are
    suppressed here and set once on the main parser, so that a subcommand's parser
    does not overwrite what was given before the subcommand."""
    g = p.add_argument_group("global options")
    g.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS,
                   metavar="LEVEL", help=f"log on stderr at this level or above: "
                   f"{', '.join(LOG_LEVELS)} (any case; default WARNING)")
    # Where connection.default_endpoint looks, in its order.
    g.add_argument("--control", type=endpoint, default=argparse.SUPPRESS, metavar="ENDPOINT",
                   help="the daemon's control endpoint, ipc://PATH or tcp://HOST:PORT (default: "
                        "vggvoxd.yaml's, else /run/vggvox/control.sock if present, else the "
                        "user's own)")
    g.add_argument("--events", type=endpoint, default=argparse.SUPPRESS, metavar="ENDPOINT",
                   help="the daemon's events endpoint, found as --control's")
    g.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="S",
                   help="seconds to wait for the daemon's reply (default: 10; enroll: 60, "
                        "or 30 after a --live recording)")
    g.add_argument("--server-key", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                   help="the daemon's public CURVE key (.key), when it uses keys; with --key")
    g.add_argument("--key", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                   help="this client's secret CURVE key (.key_secret); with --server-key")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggvox-client", description="Enroll speakers in a running vggvoxd, follow what it "
        "hears, and evaluate speaker models on files and lists (offline, no daemon needed).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser)
    parser.set_defaults(**GLOBAL_DEFAULTS)
    sub = parser.add_subparsers(dest="command", required=True,
                                help="the command; COMMAND --help shows its own options")
    daemon_cmds.add_parsers(sub)
    bridges.add_parsers(sub)
    for module in (keygen, satellite, hub, storecmd):  # a command each
        module.add_parser(sub)

    p = sub.add_parser("offline", help="identify test utterances against enrolled speakers")
    _identify_args(p, batch=False)
    p = sub.add_parser("batch-offline",
                       help="offline against a very large enrolled set: cached, parallel")
    _identify_args(p, batch=True)
    # The old name: accepted, not shown (a subparser added without help= is not listed).
    _identify_args(sub.add_parser("batch_offline"), batch=True)

    p = sub.add_parser("verify", help="EER and minDCF on VoxCeleb-format trials")
    p.add_argument("--trials", required=True, type=Path, metavar="FILE",
                   help="the trials to score (format below)")
    p.add_argument("--root", type=Path, metavar="DIR", help="folder the trial paths are "
                   "relative to (default: the trial file's folder)")
    p.add_argument("--det", type=output_file, metavar="PNG",
                   help="draw the DET curve (miss against false-alarm rate) to this PNG")
    p.add_argument("--scores", type=output_file, metavar="FILE",
                   help="write one 'score label enroll test' line per scored trial here")
    # The same workers and embedding cache as batch-offline: whole files are cached
    # under the same key, so a verify after a batch run over them takes seconds.
    p.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                   help="embedding processes (default: %(default)s, one per core)")
    p.add_argument("--cache", type=Path, default=default_cache(), metavar="DIR",
                   help="embedding cache folder, shared with batch-offline "
                        "(default: %(default)s)")
    raybatch.add_argument(p, "embed")
    _model_args(p)

    p = sub.add_parser("similarity", help="similarity matrix of several utterances")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="audio files (any format, rate and channels); each is scored against "
                        "each")
    p.add_argument("--png", type=output_file, metavar="FILE",
                   help="draw the matrix as a heat map to this PNG")
    _model_args(p)

    identify.add_parser(sub, default_cache())
    evaluate.add_parser(sub)
    conversations.add_parser(sub)
    calibrate.add_parser(sub)
    sub.metavar = "{" + ",".join(n for n in sub.choices if n != "batch_offline") + "}"
    for p in set(sub.choices.values()):
        _global_options(p)
    helptext.attach(parser, sub)
    return parser


def cmd_identify(args: argparse.Namespace) -> int:
    from vggvox_client.offline import (
        IdentifySettings,
        draw_open_set,
        identify,
        open_set_lines,
        write_results,
    )
    from vggvox_client.roomfigures import from_lists, room_lines

    if args.workers < 1:
        raise VggvoxError(f"--workers must be >= 1, got {args.workers}")
    if getattr(args, "ray", None):  # batch-offline's: one line now, not after the lists
        raybatch.require()
    if not args.open_set and (args.false_accept is not None or args.threshold is not None
                              or args.det is not None or args.rooms):
        raise VggvoxError("--false-accept, --threshold, --det and --rooms need --open-set")
    search = SearchSettings()
    if hasattr(args, "index_above"):  # batch-offline's options
        try:
            search = SearchSettings(index_above=args.index_above, nprobe=args.nprobe,
                                    rescore=args.rescore)
        except ValueError as e:  # 'search.nprobe' must be ... -> --nprobe must be ...
            raise VggvoxError(re.sub(r"'search\.(\w+)'",
                                     lambda m: "--" + m[1].replace("_", "-"), str(e))) from None
    report = identify(IdentifySettings(
        enroll_list=args.enroll_list, test_list=args.test_list,
        card_path=resolve_card(args.model), root=args.root, metric=args.metric,
        max_sec_enroll=args.max_sec_enroll, workers=args.workers, cache_dir=args.cache,
        store_path=args.store, progress=True, open_set=args.open_set,
        false_accept=args.false_accept, threshold=args.threshold, search=search,
        ray=getattr(args, "ray", None),
    ))
    report_skipped(report.skipped)
    rooms = (from_lists(report, args.enroll_list, args.test_list, args.root)
             if args.rooms else None)
    with args.out.open("w") as out:
        write_results(report, out)
    if args.json:
        print_json({**report.summary(),
                    **({"rooms": [f.as_dict() for f in rooms]} if rooms is not None else {})})
    else:
        acc = report.accuracy
        print(f"scored {len(report.results)} test utterances against {len(report.speakers)} "
              f"speakers ({len(report.skipped)} skipped); results in {args.out}")
        print("  ".join(f"{k} {_pct(acc[k])}" for k in ("top1", "top1pct", "top5pct",
                                                        "top10pct")))
        if report.depth is not None:
            print(f"  (searched through the index: ranks known up to {report.depth}; n/a: "
                  "a cut-off deeper than that)")
        if report.rule is not None:
            print("\n".join(open_set_lines(report)))
        if rooms is not None:
            print("\n".join(room_lines(rooms)))
    if args.det and not draw_open_set(report, args.det, f"{args.model}: open set"):
        print(f"{args.det}: not drawn, it needs strangers and enrolled speakers' tests",
              file=sys.stderr)
    return 0 if report.results else 1


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def cmd_verify(args: argparse.Namespace) -> int:
    from vggvox.eval.metrics import plot_det
    from vggvox_client.verify import verify

    if args.ray:
        raybatch.require()
    r = verify(args.trials, resolve_card(args.model), args.root, args.metric,
               args.workers, args.cache, progress=True, ray=args.ray)
    report_skipped(r.skipped)
    if args.scores:
        with args.scores.open("w") as out:
            for t, s in zip(r.trials, r.scores, strict=True):
                out.write(f"{s:.6f} {t.label} {t.enroll} {t.test}\n")
    if r.det is None:
        print(f"{args.trials}: no scorable trials with both labels", file=sys.stderr)
        return 1
    if args.det:
        plot_det(r.det, args.det, f"{args.model} on {args.trials.name}", r.eer)
    if args.json:
        print_json(r.summary())
    else:
        print(f"trials {len(r.scores)} ({len(r.skipped)} skipped)  EER {100 * r.eer:.2f}%  "
              f"minDCF(0.01) {r.mindcf_001:.4f}  minDCF(0.05) {r.mindcf_005:.4f}  "
              f"threshold {r.threshold:.4f}")
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    import numpy as np

    # Here, not at the top: the bridges run no model, and need no ONNX Runtime.
    from vggvox.audio import load_audio
    from vggvox.embedder import Embedder
    from vggvox_client.similarity import format_table, plot_heatmap

    embedder = Embedder(load_card(resolve_card(args.model)))
    names, embs, skipped = [], [], []
    for f in args.files:
        try:
            embs.append(embedder.embed(load_audio(f)))
            names.append(f.name)
        except VggvoxError as e:
            skipped.append(Skipped(str(f), getattr(e, "reason", str(e))))
    report_skipped(skipped)
    if not embs:
        return 1
    matrix = Scorer(args.metric).scores(np.stack(embs), np.stack(embs))
    if args.json:
        print_json({"files": names, "matrix": matrix.round(6).tolist(),
                    "skipped": [s.as_dict() for s in skipped]})
    else:
        print(format_table(names, matrix))
    if args.png:
        plot_heatmap(names, matrix, args.png, args.metric)
    return 0


COMMANDS = {
    **{name: daemon_cmds.cmd_daemon for name in daemon_cmds.NAMES},
    **{name: bridges.run for name in bridges.bridges()},
    "offline": cmd_identify,
    "batch-offline": cmd_identify,
    "batch_offline": cmd_identify,
    "verify": cmd_verify,
    "similarity": cmd_similarity,
    "identify": identify.run,
    "evaluate": lambda args: evaluate.run(args),
    "conversations": lambda args: conversations.run(args),
    "calibrate": calibrate.run,
    "keygen": keygen.run,
    "satellite": satellite.run,
    "hub": hub.run,
    "forget": voices.run,
    "store": storecmd.run,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit:  # --help, --version or a usage error, already printed
        flush_stdout()
        raise
    logsetup.configure(args.log_level, sys.stderr)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except VggvoxError as e:
        print(f"vggvox-client: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(file=sys.stderr)  # end the line the terminal's ^C is on
        return 130
    except BrokenPipeError:
        if not stdout_is_pipe():  # not the reader of our output: a fault, show it
            raise
        reader_gone()
        return 0


if __name__ == "__main__":
    sys.exit(main())
