"""``vggvox-client conversations``: synthetic conversations with RTTM truth.

The glue between the command line and vggvox.eval.conversations: the lists
in, one summary line per conversation out.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from vggvox.errors import VggvoxError
from vggvox.eval.conversations import ConversationSpec, build_conversations, gap_shares
from vggvox.eval.lists import read_utterances
from vggvox.eval.timeline import true_turns
from vggvox_client.common import Skipped, report_skipped

log = logging.getLogger(__name__)

HANGOVER_S = 0.3  # the daemon's default VAD hangover: gaps below it are the hard case


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``conversations`` subcommand to an argparse subparsers object."""
    defaults = ConversationSpec()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "conversations", help="build synthetic conversations with RTTM truth from lists",
        description="Build conversations from a 'filename speaker' list: turns of 1-3 "
                    "utterances, most gaps under the VAD hangover, some strangers; "
                    "with --overlap, some speech time with two voices.")
    p.add_argument("--material", required=True, type=Path, metavar="LIST",
                   help="the utterances to speak (e.g. test_list.csv; format below)")
    p.add_argument("--enroll-list", required=True, type=Path, metavar="LIST",
                   help="enrollment list (format below); only speakers with utterances "
                        "here can be the enrolled ones")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder (created if missing) to write convN.wav, its truth "
                        "convN.rttm, its convN_enroll.txt and conversations.json in")
    p.add_argument("--count", type=int, default=defaults.n_conversations, metavar="N",
                   help="conversations to build (default: %(default)s)")
    p.add_argument("--duration", type=float, default=defaults.duration_s, metavar="S",
                   help="minimum seconds per conversation (default: %(default)s)")
    p.add_argument("--enrolled", type=int, default=defaults.n_enrolled, metavar="N",
                   help="enrolled speakers per conversation (default: %(default)s)")
    p.add_argument("--strangers", type=int, default=defaults.n_strangers, metavar="N",
                   help="strangers per conversation (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, metavar="N",
                   help="random seed; the same seed gives the same files (default: %(default)s)")
    p.add_argument("--overlap", type=float, default=defaults.overlap_fraction, metavar="F",
                   help="share of the speech time with two voices, e.g. 0.15: turns that "
                        "start before the previous one ends and back-channels inside turns, "
                        "the overlapping voice 0-6 dB lower (default: %(default)s, none)")
    return p


def run(args: argparse.Namespace) -> int:
    """Build the conversations; 0 when built (VggvoxError when the lists cannot fill them)."""
    if args.out.exists() and not args.out.is_dir():
        raise VggvoxError(f"--out {args.out}: not a folder")
    material, bad = read_utterances(args.material)
    enroll, bad_enroll = read_utterances(args.enroll_list)
    report_skipped([Skipped.from_list_error(e) for e in bad + bad_enroll])
    spec = ConversationSpec(n_conversations=args.count, duration_s=args.duration,
                            n_enrolled=args.enrolled, n_strangers=args.strangers,
                            seed=args.seed, overlap_fraction=args.overlap)
    for c in build_conversations(material, enroll, spec, args.out):
        gaps = gap_shares(c.segments, HANGOVER_S)
        # Each speaker's own turns: two strangers in a row are two turns, not one "unknown".
        turns = true_turns(c.segments, {s.speaker for s in c.segments})
        print(f"{c.wav}: {c.duration_s:.1f} s, {len(turns)} "
              f"turns, enrolled {','.join(c.enrolled)}, strangers {','.join(c.strangers) or '-'}, "
              f"gaps < {HANGOVER_S} s at speaker changes {gaps['short_changes']}/{gaps['changes']}"
              + ("" if c.overlap_share is None else
                 f", two voices {100 * c.overlap_share:.1f}% of the speech time "
                 f"({len(c.overlaps)} overlaps)"))
    return 0
