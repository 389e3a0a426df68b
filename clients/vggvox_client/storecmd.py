"""``vggvox-client store migrate --from SRC --to DST``: copy a voiceprint store into
another, SQLite to PostgreSQL (or back), in one transaction on the target
(``vggvox.storecopy``). Works on the stores themselves, not through a daemon: stop
the daemons that write the source first, or enrollments made meanwhile stay behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vggvox.errors import StoreError
from vggvox.storeopen import parse_store_location, store_argument
from vggvox_client.common import plural


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="copy a voiceprint store into another (store migrate)")
    actions = p.add_subparsers(dest="store_command", required=True, metavar="ACTION",
                               help="migrate: copy this store into another")
    m = actions.add_parser("migrate", help="copy speakers, embeddings, provisional voices "
                                           "and rooms into another store")
    m.add_argument("--from", dest="source", required=True, type=store_argument,
                   metavar="STORE", help="the store to copy: sqlite:PATH, a file, or a "
                                         "postgresql:// URL (only read)")
    m.add_argument("--to", dest="target", required=True, type=store_argument,
                   metavar="STORE", help="the store to copy into (created if missing)")


def run(args: argparse.Namespace) -> int:
    from vggvox.storecopy import copy_store
    from vggvox.storeopen import open_store

    source = parse_store_location(args.source)
    if isinstance(source, Path) and not source.is_file():
        raise StoreError(f"store migrate: no store at {source}")
    src = open_store(source)
    try:
        dst = open_store(args.target)
        try:
            done = copy_store(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    model = f" of model {done.model}" if done.model else ""
    print(f"copied {plural(done.speakers, 'speaker')} ({plural(done.embeddings, 'embedding')})"
          f"{model}, {plural(done.provisional, 'provisional voice')} and "
          f"{plural(done.rooms, 'room calibration')} from {src.location} to {dst.location}; "
          "the source is unchanged")
    return 0
