"""``vggvox-client web``: the command. The bridge: ``app.py`` (routes),
``requestcheck.py`` (token, Host, Origin, CSRF), ``peer.py`` (which local user
connects), ``server.py`` and ``linger.py`` (caps and time-outs), ``hub.py`` (one event
subscription for every page), ``page.html``; loaded on run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vggvox_client.bridges import Bridge

if TYPE_CHECKING:
    from vggvox_client.connection import Connection


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="127.0.0.1:8765", metavar="HOST:PORT",
                   help="where to serve it (default 127.0.0.1:8765; off loopback only with "
                        "--token-file)")
    p.add_argument("--token-file", type=Path, metavar="F",
                   help="a private file (not readable by every user) holding the token the "
                        "page needs (default: one made at start and kept 0600 in your "
                        "runtime folder)")
    p.add_argument("--allow-host", action="append", metavar="NAME", default=[],
                   help="also answer to this host name (a LAN name, a reverse proxy's); "
                        "repeatable. Any other Host header is refused (DNS rebinding)")
    p.add_argument("--print-url", action="store_true",
                   help="print the running page's URL with its token, and exit")


def run(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client.bridges.web import app

    return app.run(conn, args.listen, args.token_file, args.allow_host, args.print_url)


BRIDGE = Bridge(
    name="web",
    help="a web page of who is speaking, with enrollment from an uploaded file (runs "
         "until stopped)",
    examples="""examples:
  vggvox-client web                                 # prints http://127.0.0.1:8765/?token=...
  vggvox-client web --print-url                     # the running page's URL, with its token
  vggvox-client web --allow-host pi.lan             # also answer to http://pi.lan:8765/
  vggvox-client web --listen 0.0.0.0:8765 --token-file ~/.vggvox-web-token
                                                    # then open http://HOST:8765/?token=...""",
    add_arguments=add_arguments, run=run)
