"""``vggvox-client watch``: the command; the view is ``view.py`` (rich, loaded on run)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vggvox_client.bridges import Bridge

if TYPE_CHECKING:
    from vggvox_client.connection import Connection


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")


def run(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client.bridges.watch import view

    return view.run(conn, args.seconds)


BRIDGE = Bridge(
    name="watch",
    help="a live view of who is speaking on each source, the enrolled speakers and the "
         "daemon's state (q quits)",
    examples="""examples:
  vggvox-client watch                   # until q or Ctrl-C; works over SSH
  vggvox-client watch --seconds 60""",
    add_arguments=add_arguments, run=run)
