"""ZeroMQ CURVE on the daemon's sockets: who may connect, and who may do what.

With ``security.server_key`` set, both sockets are CURVE servers. pyzmq's
``ThreadAuthenticator`` answers libzmq's ZAP requests: a client whose public
key is in neither ``security.admins`` nor ``security.readers`` fails the
handshake, so it gets no events and no replies at all. A client that passes
is known on the control socket by its key (the ``User-Id`` ZAP gives each
message), and ``role`` says what it may do: readers may subscribe, ``list``
and ``status`` and see the sources' rooms (``calibration``); admins may also enroll,
name, remove, replay, reload and reset a room (``calibration_reset``).

Keys are pyzmq certificate files, as ``vggvox-client keygen`` writes them.
Satellites (remote microphones) connect to a socket of their own, in another ZAP
domain (``SATELLITE_DOMAIN``), with keys from ``security.satellites`` alone: a
satellite's key opens neither events nor control, nor an admin's the satellites socket.

The folders are read again on ``reload`` (SIGHUP), so a key can be added or
withdrawn without a restart; existing connections keep their handshake.

Refused handshakes are logged with their key, the first ``REFUSED_BURST`` at once,
then at most one line per ``REFUSED_LOG_S`` per domain, which says how many were left
unsaid since: a flood of unknown keys (67 handshakes/s in bench/abuse_satellites.py)
must not flood the journal. A count still unsaid when the flood stops is logged at
``stop``.

Threads: the authenticator runs its own thread; ``KeyRing`` is read there and
by the control thread, and replaced whole (one assignment) on reload. ``_refusals``
is the authenticator thread's, and ``stop``'s once that thread has ended.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from vggvox.errors import ConfigError
from vggvox.protocol.requests import READER, role_of
from vggvoxd.config import SecuritySettings

log = logging.getLogger(__name__)

ZAP_DOMAIN = "vggvox"
"""The authentication domain of both sockets (the authenticator answers for it)."""
SATELLITE_DOMAIN = "vggvox-satellites"
"""The domain of the satellites socket: only ``security.satellites`` keys pass there,
and only there."""
REFUSED_BURST = 5
REFUSED_LOG_S = 10.0
"""Refused handshakes are logged one a line for the first ``REFUSED_BURST``, then at most
one line in this long per domain, which counts those left unsaid."""


@dataclass
class Refusals:
    """One domain's refused handshakes and the lines it may still log (a token bucket)."""

    at: float
    """Monotonic time of the last refusal."""
    lines: float = REFUSED_BURST
    unsaid: int = 0
    """Refused since the last line."""
    total: int = 0
    latest: str = ""


@dataclass(frozen=True)
class Keys:
    admins: frozenset[bytes]
    readers: frozenset[bytes]
    """Z85-encoded public keys, as ZAP reports them."""
    satellites: frozenset[bytes] = frozenset()
    """Remote microphones' keys: valid on the satellites socket alone."""


def public_keys(folder: str | None, key: str) -> frozenset[bytes]:
    """The Z85 public keys of the ``.key`` files in ``folder`` (none if unset)."""
    if not folder:
        return frozenset()
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"'security.{key}': {path} is not a folder")
    found = set()
    for f in sorted(path.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(f)
        except (ValueError, OSError) as e:
            raise ConfigError(f"'security.{key}': {f}: not a public key file: {e}") from None
        found.add(public)
    return frozenset(found)


def server_keys(path_text: str) -> tuple[bytes, bytes]:
    """(public, secret) from the daemon's ``.key_secret`` file, which must be private."""
    path = Path(path_text).expanduser()
    try:
        mode = path.stat().st_mode & 0o777
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as e:
        raise ConfigError(f"'security.server_key': {path}: cannot read a key: {e}") from None
    if secret is None:
        raise ConfigError(f"'security.server_key': {path} holds no secret key (give the "
                          ".key_secret file that vggvox-client keygen wrote)")
    if mode & 0o077:
        raise ConfigError(f"'security.server_key': {path} may be read by others (mode "
                          f"{mode:o}): chmod 600 {path}")
    return public, secret


class Curve:
    """CURVE for the daemon's sockets, or nothing when ``server_key`` is not set."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self.enabled = bool(settings.server_key)
        self._server: tuple[bytes, bytes] | None = None
        self.keys = Keys(frozenset(), frozenset())
        self._auth: ThreadAuthenticator | None = None
        self._refusals: dict[str, Refusals] = {}
        if self.enabled:
            assert settings.server_key is not None
            self._server = server_keys(settings.server_key)
            self.load()

    def load(self) -> None:
        """(Re)read the key folders; a bad folder keeps the keys in force."""
        s = self.settings
        self.keys = Keys(public_keys(s.admins, "admins"), public_keys(s.readers, "readers"),
                         public_keys(s.satellites, "satellites"))
        log.info("CURVE: %d admin, %d reader and %d satellite keys", len(self.keys.admins),
                 len(self.keys.readers), len(self.keys.satellites))

    def reload(self) -> None:
        if self.enabled:
            try:
                self.load()
            except ConfigError as e:
                log.error("keys not reloaded, the old ones stay in force: %s", e)

    def start(self) -> None:
        """Start answering ZAP requests: before any socket binds."""
        if self.enabled:
            self._auth = ThreadAuthenticator(zmq.Context.instance(), log=log)
            self._auth.start()
            self._auth.configure_curve_callback(ZAP_DOMAIN, credentials_provider=self)
            self._auth.configure_curve_callback(SATELLITE_DOMAIN, credentials_provider=self)

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        for domain, r in self._refusals.items():
            if r.unsaid:  # what the rate left unsaid
                log.warning("CURVE: refused %d more %ss with unknown keys (%d in all; the "
                            "latest %s)", r.unsaid, _who(domain), r.total, r.latest)
                r.unsaid = 0

    def alive(self) -> bool:
        """The authenticator's thread (pyzmq's, not under a Guard) runs, or CURVE is off
        or stopped: part of the daemon's health, as no client connects without it."""
        return self._auth is None or self._auth.is_alive()

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP, in the authenticator's thread: may this key connect at all?"""
        keys = self.keys
        if domain == SATELLITE_DOMAIN:
            allowed = key in keys.satellites
        else:
            allowed = key in keys.admins or key in keys.readers
        if not allowed:
            self._refused(domain, key.decode(), time.monotonic())
        return allowed

    def _refused(self, domain: str, key: str, now: float) -> None:
        r = self._refusals.setdefault(domain, Refusals(now))
        r.lines = min(REFUSED_BURST, r.lines + (now - r.at) / REFUSED_LOG_S)
        r.at, r.total = now, r.total + 1
        if r.lines < 1:
            r.unsaid, r.latest = r.unsaid + 1, key
            return
        r.lines -= 1
        more = f" (and {r.unsaid} more since the last such line, {r.total} in all)" \
            if r.unsaid else ""
        r.unsaid = 0
        log.warning("CURVE: refused a %s with an unknown key %s%s", _who(domain), key, more)

    def socket_options(self, domain: str = ZAP_DOMAIN) -> dict[int, int | bytes]:
        """Options that make a bound socket a CURVE server (none when disabled); the
        satellites socket's ``domain`` is ``SATELLITE_DOMAIN``."""
        if self._server is None:
            return {}
        public, secret = self._server
        return {zmq.CURVE_SERVER: 1, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret,
                zmq.ZAP_DOMAIN: domain.encode()}

    def allows(self, user_id: str, op: str, role: str | None = None) -> str | None:
        """None when the client known as ``user_id`` may make request ``op``, else why not.
        ``role`` is what ``op`` needs (its request type's); by default the protocol's."""
        if not self.enabled:
            return None  # the ipc socket's file permissions decide who gets this far
        key = user_id.encode()
        role = role or role_of(op)
        if key in self.keys.admins or (role == READER and key in self.keys.readers):
            return None
        role = "a reader" if key in self.keys.readers else "no longer allowed"
        return f"not allowed: this client's key is {role}; {op!r} needs an admin key"


def _who(domain: str) -> str:
    return "satellite" if domain == SATELLITE_DOMAIN else "client"
