"""Who may use ``vggvox-client web``: the Host it answers to, its token, and the
same-origin and CSRF checks of a request that changes something.

- **Host.** Only the names it serves: its listen address and port; on loopback
  also ``localhost``, ``127.0.0.1`` and ``[::1]`` with that port; on a wildcard
  address (``0.0.0.0``, ``::``) any IP address with that port; and each
  ``--allow-host NAME`` (with or without a port: a reverse proxy or a LAN name).
  A page of another site that rebinds its DNS name to this machine sends its
  own name as Host, and gets 421 before any work.
- **Token.** Every request carries the token: the cookie set when the page is
  opened as ``/?token=...`` (HttpOnly, SameSite=Strict, one name per port), or
  ``?token=`` or ``Authorization: Bearer`` (scripts). Compared in constant time.
- **Same origin and CSRF, for POST.** ``Origin`` must be one of the origins of
  the names above (a missing one is refused), ``Sec-Fetch-Site``, when the
  browser sends it, must be ``same-origin``, and ``X-CSRF-Token`` must equal the
  value embedded in the page, which only a reader of the page (same origin) has.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from vggvox.errors import VggvoxError
from vggvox.loopback import is_loopback
from vggvox.protocol.endpoints import private_dir, runtime_folder

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")


class Headers(Protocol):
    """What is read of a request's headers: a dict in the tests, the server's
    ``HTTPMessage`` (an ``email.message.Message``) in use."""

    def get(self, name: str, /) -> str | None: ...


def parse_listen(spec: str, token: str | None) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port); off loopback only with a token file (``token``)."""
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VggvoxError(f"--listen must be HOST:PORT, got {spec!r}")
    host = host.strip("[]")
    if not is_loopback(host) and not token:
        raise VggvoxError(f"--listen {spec} is not loopback: give --token-file, whose token "
                          "every request must then carry")
    return host, int(port)


def read_token_file(path: Path) -> str:
    """The token in ``--token-file``: one that every local user may read would give
    them the page, so it is refused (the file's readers are the page's users)."""
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as e:
        raise VggvoxError(f"--token-file {path}: cannot read it: {e.strerror}") from None
    if mode & stat.S_IROTH:
        raise VggvoxError(f"--token-file {path}: every local user may read it (mode "
                          f"{stat.S_IMODE(mode):o}), and with it use the page: chmod 600 it "
                          "(or 640, for a group)")
    if not token:
        raise VggvoxError(f"--token-file {path} is empty")
    if not _TOKEN.fullmatch(token):
        raise VggvoxError(f"--token-file {path}: the token may hold letters, digits and "
                          "-._~+/= only (it travels in a URL and a cookie)")
    return token


def kept_token(port: int) -> Path:
    """Where a generated token is kept: the starter's private runtime folder (made
    if missing, refused if another user owns it or may write to it)."""
    return private_dir(runtime_folder()) / f"web-{port}.token"


def read_kept_token(port: int, listen: str) -> str:
    """The token a running bridge keeps, for ``--print-url``: read only, never made or
    replaced, so that the URL printed is the one the running bridge takes. Another
    user's folder is fine to read (root, for the service's ``/run/vggvox-web``)."""
    path = runtime_folder() / f"web-{port}.token"
    try:
        token = path.read_text().strip() if path.is_file() else ""
    except OSError as e:
        token, why = "", e.strerror
    else:
        why = "not there"
    if not token:
        raise VggvoxError(f"no token in {path} ({why}): is vggvox-client web running on "
                          f"{listen} as this user? For the service, give its file: sudo "
                          f"vggvox-client web --print-url --token-file "
                          f"/run/vggvox-web/web-{port}.token")
    return token


def banner(listen: str, url: str, token_file: Path | None, kept: Path | None) -> str:
    """The URL to open. Its token is shown only on a terminal, so that a service's
    log (which more users may read than the token file) does not hold it."""
    if token_file is not None:
        return f"vggvox web page on http://{listen}/?token=... (the token in {token_file})"
    if sys.stdout.isatty():
        return f"vggvox web page: open {url}\n(the token is also kept in {kept})"
    return (f"vggvox web page on http://{listen}/?token=... (the token is in {kept}, "
            "readable by this user only)")


def generated_token(path: Path) -> str:
    """The token kept at ``path`` (this user's, mode 0600), else a new random one
    written there 0600: reused, so that a restart keeps open pages working."""
    try:
        st = path.lstat()
        if (stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid()
                and not stat.S_IMODE(st.st_mode) & 0o077):
            token = path.read_text().strip()
            if len(token) >= 32:
                return token
    except OSError:
        pass
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class Guard:
    """The checks of one bridge: its Host names, its token, its CSRF value."""

    def __init__(self, host: str, port: int, token: str, allow_hosts: Iterable[str] = ()
                 ) -> None:
        self.port = port
        self.token = token
        self.cookie = f"vggvox-web-{port}"
        # Bound to the token, so that a restart with the same token keeps pages valid.
        self.csrf = hmac.new(token.encode(), b"vggvox-web csrf", hashlib.sha256).hexdigest()
        shown = f"[{host}]" if ":" in host else host
        names = {shown.lower(), *(LOOPBACK_NAMES if is_loopback(host) else ())}
        self.hosts = {f"{n}:{port}" for n in names}
        for name in allow_hosts:
            name = name.strip().lower()
            self.hosts |= {name} if _has_port(name) else {name, f"{name}:{port}"}
        self.any_ip = host in ("0.0.0.0", "::", "")

    def host_ok(self, host: str | None) -> bool:
        if not host:
            return False
        host = host.strip().lower()
        if host in self.hosts:
            return True
        if not self.any_ip:
            return False
        # On a wildcard address the machine's own addresses are not known: an IP
        # literal is safe to take, since a rebinding page always sends a DNS name.
        name, _, port = host.rpartition(":")
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return port == str(self.port)

    def given_tokens(self, headers: Headers, query: Mapping[str, list[str]]
                     ) -> list[str]:
        """The tokens a request carries (``?token=``, bearer, this port's cookie)."""
        given = list(query.get("token") or [])[:1]
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        # Split by hand, not SimpleCookie: it stops at the first cookie it does not
        # like, and the Cookie header carries every localhost app's cookies (they are
        # shared across ports), so another app's JSON or spaced name would cost the
        # page its own. Every cookie of this name is tried: another app on this host
        # may set one of the same name, which must not hide the real one.
        for pair in (headers.get("Cookie") or "").split(";"):
            name, eq, value = pair.partition("=")
            if eq and name.strip() == self.cookie:
                given.append(value.strip().strip('"'))
        return given

    def authorized(self, headers: Headers, query: Mapping[str, list[str]]) -> bool:
        return any(hmac.compare_digest(given.encode(), self.token.encode())
                   for given in self.given_tokens(headers, query))

    def set_cookie(self) -> str:
        return f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"

    def cross_site(self, headers: Headers) -> str | None:
        """Why a state-changing request is refused as not from this page; None if it is."""
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            return f"made from another site (Sec-Fetch-Site: {site})"
        origin = headers.get("Origin")
        if not origin:
            return "no Origin header"
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not self.host_ok(parts.netloc):
            return f"made from another origin ({origin})"
        given = headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            return "no valid X-CSRF-Token (reload the page)"
        return None


def _has_port(name: str) -> bool:
    tail = name.rpartition("]")[2] if name.startswith("[") else name
    return ":" in tail and tail.rpartition(":")[2].isdigit()
