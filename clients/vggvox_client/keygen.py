"""``vggvox-client keygen DIR NAME``: a CURVE key pair for the daemon or a client.

``DIR/NAME.key`` is the public key: copy it to whoever needs it (a client's
into the daemon's ``security.admins`` or ``security.readers`` folder; the
daemon's to its clients, for ``--server-key``). ``DIR/NAME.key_secret`` is
the secret key (mode 0600): it stays with its owner.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="write a CURVE key pair: DIR/NAME.key (public) and "
                                      "DIR/NAME.key_secret (secret, 0600)")
    p.add_argument("dir", type=Path, help="folder to write the keys in (created if missing)")
    p.add_argument("name", help="key name, e.g. vggvoxd for the daemon, or a user's name")


def run(args: argparse.Namespace) -> int:
    from vggvox.protocol.keys import keygen

    public, secret = keygen(args.dir, args.name)
    print(f"public key {public}\nsecret key {secret} (keep it private)")
    return 0
