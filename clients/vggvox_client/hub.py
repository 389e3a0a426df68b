"""``vggvox-client hub``: the events of several daemons, forwarded to one place.

A fleet's daemons each publish their events (every one with the daemon's
``node``); the hub subscribes to all of them and republishes what they say,
unchanged, on one endpoint of its own. ``listen``, ``watch``, ``web`` and
``mqtt`` point ``--events`` at the hub (and ``--control`` at the hub's own
control endpoint, which answers ``status``) as they would at a daemon, and name
each source ``NODE/SOURCE``. ``hubloop.py`` has the sockets and their limits;
docs/hub.md says how to run it, and what fails how.

Keys (CURVE on both sides, ``vggvox-client keygen``): the hub's own pair
(``--hub-key``, its ``.key_secret``); its public half goes in each daemon's
``security.readers`` folder. ``--daemon-key`` is a daemon's public ``.key``
(once for all, or once per ``--daemon``, in order). Subscribers hand the hub's
public key as ``--server-key``, and their public keys go in ``--subscribers``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from vggvox.errors import VggvoxError
from vggvox.loopback import is_loopback
from vggvox_client.common import endpoint
from vggvox_client.hubauth import HubAuth
from vggvox_client.hubloop import EVENTS_DOMAIN, Counts, HubLoop

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 64
HWM = 1000
MAX_MESSAGE_BYTES = 1 << 20
"""A daemon's event, at most (a ``speaker`` event is ~300 bytes)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hub", help="forward the events of several daemons to subscribers, "
                                   "with CURVE on both sides (see docs/hub.md)")
    p.add_argument("--daemon", type=endpoint, action="append", required=True,
                   metavar="ENDPOINT", help="a daemon's events endpoint (repeat per daemon)")
    p.add_argument("--daemon-key", type=Path, action="append", default=[], metavar="FILE",
                   help="a daemon's public .key: once for all, or once per --daemon")
    p.add_argument("--hub-key", type=Path, metavar="FILE",
                   help="the hub's .key_secret: its CURVE key towards daemons and subscribers")
    p.add_argument("--subscribers", type=Path, metavar="DIR",
                   help="folder of the public .key files of who may subscribe and ask status")
    p.add_argument("--listen", type=endpoint, required=True, metavar="ENDPOINT",
                   help="where subscribers connect (XPUB)")
    p.add_argument("--listen-control", type=endpoint, metavar="ENDPOINT",
                   help="where the hub answers 'status' (default: nowhere)")
    p.add_argument("--max-subscribers", type=int, default=MAX_SUBSCRIBERS, metavar="N",
                   help="subscribers at once; beyond, a handshake waits (%(default)s)")
    p.add_argument("--hwm", type=int, default=HWM, metavar="N", help="messages queued per "
                   "subscriber; beyond, a slow subscriber's are dropped (%(default)s)")
    p.add_argument("--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES, metavar="N",
                   help="a daemon's message, at most; larger ones drop its link (%(default)s)")


def _keypair(path: Path, what: str) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (ValueError, OSError) as e:
        raise VggvoxError(f"{what} {path}: cannot read a CURVE key: {e}") from None


def allowed_keys(folder: Path) -> frozenset[bytes]:
    """The public keys of the ``.key`` files in ``folder``."""
    if not folder.is_dir():
        raise VggvoxError(f"--subscribers {folder}: not a folder")
    return frozenset(_keypair(f, "--subscribers")[0] for f in sorted(folder.glob("*.key")))


def _beyond_loopback(ep: str) -> bool:
    """A TCP endpoint others can reach: one the hub may use only with CURVE."""
    return ep.startswith("tcp://") and not is_loopback(ep[6:].rpartition(":")[0])


def upstream_options(args: argparse.Namespace) -> dict[str, dict[int, Any]]:
    """Each daemon's endpoint and its socket's CURVE client options."""
    keys: list[Path] = args.daemon_key
    if keys and len(keys) not in (1, len(args.daemon)):
        raise VggvoxError(f"--daemon-key: give one for all daemons or one per --daemon "
                          f"({len(args.daemon)}), got {len(keys)}")
    if keys and args.hub_key is None:
        raise VggvoxError("--daemon-key needs --hub-key (the hub's .key_secret)")
    out: dict[str, dict[int, Any]] = {}
    for i, ep in enumerate(args.daemon):
        if not keys:
            if _beyond_loopback(ep):
                raise VggvoxError(f"--daemon {ep}: beyond loopback, give --daemon-key and "
                                  "--hub-key (CURVE)")
            out[ep] = {}
            continue
        server, _ = _keypair(keys[i if len(keys) > 1 else 0], "--daemon-key")
        public, secret = _keypair(args.hub_key, "--hub-key")
        out[ep] = {zmq.CURVE_SERVERKEY: server, zmq.CURVE_PUBLICKEY: public,
                   zmq.CURVE_SECRETKEY: secret}
    return out


def server_options(args: argparse.Namespace) -> dict[int, Any] | None:
    """The hub's CURVE server key, or None (no CURVE: only on ipc:// or loopback)."""
    if args.hub_key is None or args.subscribers is None:
        for ep in filter(None, (args.listen, args.listen_control)):
            if _beyond_loopback(ep):
                raise VggvoxError(f"{ep}: beyond loopback the hub needs --hub-key and "
                                  "--subscribers (CURVE)")
        return None
    public, secret = _keypair(args.hub_key, "--hub-key")
    if secret is None:
        raise VggvoxError(f"--hub-key {args.hub_key}: holds no secret key (the .key_secret)")
    return {zmq.CURVE_SECRETKEY: secret, zmq.CURVE_PUBLICKEY: public}


def check(args: argparse.Namespace) -> None:
    if not 1 <= args.max_subscribers <= 10_000:
        raise VggvoxError(f"--max-subscribers must be 1..10000, got {args.max_subscribers}")
    if not 1 <= args.hwm <= 1_000_000:
        raise VggvoxError(f"--hwm must be 1..1000000, got {args.hwm}")
    if not 1024 <= args.max_message_bytes <= 1 << 26:
        raise VggvoxError(f"--max-message-bytes must be 1 KiB..64 MiB, "
                          f"got {args.max_message_bytes}")


def build(args: argparse.Namespace) -> tuple[HubLoop, HubAuth | None]:
    """The hub's sockets, bound and connected, and its authenticator (None: no CURVE)."""
    check(args)
    upstream, server = upstream_options(args), server_options(args)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    counts = Counts()
    auth = None
    if server is not None:
        auth = HubAuth(ctx, allowed_keys(args.subscribers), EVENTS_DOMAIN, counts,
                       args.max_subscribers)
    try:
        loop = HubLoop(ctx, upstream, args.listen, args.listen_control, server, args.hwm,
                       args.max_message_bytes, counts)
    except zmq.ZMQError as e:
        if auth is not None:
            auth.stop()
        raise VggvoxError(f"cannot listen on {args.listen} / {args.listen_control}: {e}") \
            from None
    if auth is not None:
        auth.start(loop.xpub_monitor)
    return loop, auth


def run(args: argparse.Namespace) -> int:
    """Forward until SIGTERM or Ctrl-C (exit 0)."""
    loop, auth = build(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: loop.stop.set())
    log.info("hub: %d daemons -> %s (control %s)", len(loop.daemons), args.listen,
                args.listen_control or "none")
    thread = threading.Thread(target=loop.run, name="hub", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        loop.stop.set()
        thread.join(5)
        if auth is not None:
            auth.stop()
    return 0
