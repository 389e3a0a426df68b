"""The URLs of network audio sources (``vggvoxd.netsource``): their check before
anything loads, how they are shown, and what FFmpeg is told to open them with.

    rtsp://[USER:PASS@]HOST[:PORT]/PATH    an RTSP server (an IP camera): pulled over TCP
    rtp://HOST:PORT                        RTP arriving on a local UDP port (a static
                                           payload type: G.711, L16 at 44.1 kHz, MPEG audio)
    sdp:PATH                               RTP described by a session description file
                                           (any codec: Opus, L16 at 16 kHz, AAC, ...)
    udp://HOST:PORT                        a raw UDP stream (MPEG-TS, as streaming servers send)
    http(s)://[USER:PASS@]HOST[:PORT]/PATH a stream served over HTTP (Icecast, a camera's
                                           audio endpoint, HLS)

A URL's password (and a query's credential-like values) never reaches a log line,
``status``, an event or the store: everything outside this module sees ``shown(url)``.

HTTPS servers' certificates are verified (name and chain), which FFmpeg does not do by
default, against the system's CA bundle unless a source's ``options`` give a ``ca_file``
or ``tls_verify: 0``.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MAX_URL = 2048
"""A URL longer than this is refused: no camera's is, and it would be a line in every log."""
SECRET_KEYS = re.compile(r"pass|pwd|token|secret|key|auth|sig", re.IGNORECASE)
"""Query keys whose values are hidden as a password is (``?user=admin&password=...``)."""
HIDDEN = "***"
LISTEN_S = 10
"""How long RTSP in listen mode waits for a publisher before listening again."""

PROTOCOLS = {
    "rtsp": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtp": "rtp,udp",
    "sdp": "file,rtp,srtp,udp,crypto",
    "udp": "udp,rtp",
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
}
"""What FFmpeg may open for each scheme (``protocol_whitelist``): a stream never makes
it read a local file (an HLS playlist naming file:/etc/...), but an SDP file is one."""

DEFAULTS = {
    "rtsp": {"rtsp_transport": "tcp"},
}
"""FFmpeg's options a scheme starts from (the source's ``options`` win): RTSP over TCP
passes firewalls and NAT and loses nothing, where FFmpeg's default tries UDP first."""


TLS_SCHEMES = ("http", "https")
"""Schemes that may speak TLS: https, and http, whose server may redirect to https."""
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
              "/etc/ssl/cert.pem", "/etc/pki/tls/cert.pem")
"""Where systems keep their CA certificates in one file (Debian, Fedora, Alpine, ...)."""


def ca_bundle() -> str | None:
    """The system's CA certificates as one file (``SSL_CERT_FILE`` first, as OpenSSL
    reads it), or None. Given to FFmpeg as ``ca_file``: the GnuTLS bundled in PyAV's
    wheel looks only in /etc/pki/tls/cert.pem, which Debian and Ubuntu do not have."""
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile, *CA_BUNDLES):
        if path and os.path.isfile(path):
            return path
    return None


def tls_defaults(given: dict[str, str]) -> dict[str, str]:
    """FFmpeg's TLS options unless ``given`` says otherwise: the certificate verified
    (FFmpeg's default, ``tls_verify`` 0, takes any), against the system's bundle."""
    out = {"tls_verify": "1"}
    bundle = ca_bundle()
    if bundle is not None and "ca_file" not in given and "cafile" not in given:
        out["ca_file"] = bundle
    return out


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].lower()


def is_network(uri: str) -> bool:
    """A network source's URL (of a scheme of this module)."""
    return scheme_of(uri) in PROTOCOLS and ":" in uri


def check(url: str) -> None:
    """A ValueError saying what is wrong with a network source's URL, or the session
    description an ``sdp:PATH`` names, before anything opens it."""
    check_form(url)
    if scheme_of(url) == "sdp":
        _check_sdp(Path(url[4:]))


def check_form(url: str) -> None:
    """A ValueError saying what is wrong with how a URL is written (what the config
    checks when it is read; an SDP file is read when the daemon starts)."""
    if len(url) > MAX_URL:
        raise ValueError(f"longer than {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("has a space or a control character (percent-encode it: %20)")
    scheme = scheme_of(url)
    if scheme == "sdp":
        return
    parts = urlsplit(url)
    if not url[len(scheme):].startswith("://"):
        raise ValueError(f"must be {scheme}://HOST... ")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("its port must be a number from 1 to 65535") from None
    if not parts.hostname and scheme != "udp":
        raise ValueError("names no host")
    if scheme in ("rtp", "udp") and port is None:
        raise ValueError("names no port (the local UDP port the stream arrives on)")
    if port == 0:
        raise ValueError("its port must be a number from 1 to 65535")


def _check_sdp(path: Path) -> None:
    try:
        text = path.read_text(errors="replace")[:65536]
    except OSError as e:
        raise ValueError(f"cannot read the session description: {e.strerror or e}") from None
    if "m=audio" not in text:
        raise ValueError("the session description has no 'm=audio' line: no audio in it")


def shown(url: str) -> str:
    """The URL as logs, status and events show it: its password, and the values of a
    query's credential-like keys, hidden."""
    scheme = scheme_of(url)
    if scheme == "sdp" or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{scheme}://{HIDDEN}"  # unparsable: show nothing that could be a secret
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{HIDDEN}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = parts.query
    if query and SECRET_KEYS.search(query):
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, HIDDEN if SECRET_KEYS.search(k) else v) for k, v in pairs],
                          safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def target(url: str) -> str:
    """What FFmpeg opens: the URL, or an SDP file's path."""
    return url[4:] if scheme_of(url) == "sdp" else url


def options(url: str, given: dict[str, str]) -> dict[str, str]:
    """FFmpeg's options for ``url``: the scheme's protocols and defaults, then ``given``
    (the source's ``options``; the protocol whitelist is not theirs to widen)."""
    scheme = scheme_of(url)
    tls = tls_defaults(given) if scheme in TLS_SCHEMES else {}
    out = {**DEFAULTS.get(scheme, {}), **tls, **given, "protocol_whitelist": PROTOCOLS[scheme]}
    if listens(url, given) and scheme == "rtsp":
        # FFmpeg's default (wait for ever) fails at once under an open deadline: ERANGE.
        out.setdefault("listen_timeout", str(LISTEN_S))
    return out


def listens(url: str, given: dict[str, str]) -> bool:
    """The daemon waits for the stream to come to it (a local UDP port, RTSP in listen
    mode) rather than calling a server: nobody to spare by backing off."""
    scheme = scheme_of(url)
    return scheme in ("rtp", "udp", "sdp") or given.get("rtsp_flags") == "listen"
