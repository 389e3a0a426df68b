"""``vggvox-client web``: a web page of who is speaking, fed by server-sent events.

    vggvox-client web [--listen 127.0.0.1:8765] [--token-file F] [--allow-host NAME]...

- ``/``: the page (``page.html``): per source, the current speaker and a
  timeline of the last 60 s of turns; the enrolled speakers; a form to enroll
  a new speaker from an uploaded file. ``/state``: what the page draws at once
  (the sources with their state, current speaker and recent turns; the
  speakers). ``/events``: the daemon's events as server-sent events, from one
  shared subscription (``hub.py``). ``/speakers``: the daemon's ``list``.
  ``/enroll`` (POST, the file's bytes, ``?name=``): an enrollment.

**Who may use it (the local-user policy).** The page gives nobody more than the
daemon's control socket gives them. The bridge talks to the daemon as the user
who started it, so without a guard it would lend that user's access to every
local account (and to every web page, through the browser). Two guards:

- every request needs the token, on loopback too: a random one made at start,
  kept 0600 in the starter's runtime folder (``web-PORT.token``) and shown on
  the starter's terminal, or the one in ``--token-file``, refused if every
  local user may read it. Whoever can read the token may use the page: the
  starter (and root), or with a 0640 file its group (for the service, group
  ``vggvox``, as the sockets);
- a connection from this machine is also checked by its owner's uid, which
  the control socket's permissions must admit (``peer.py``): the token's
  cookie reaches every port of the host, so a local user's own server could
  learn it, and must still get nothing. A connection from this machine whose
  owner cannot be established (closed as it was read: the kernel then reports
  root) is refused too.

Any other local user gets 403 for every path, the page included. Host,
Origin and CSRF: ``requestcheck.py``; caps and time-outs: ``server.py``.
Uploads are checked by their header (rate, duration at most the daemon's
enrollment maximum) before they are decoded, and decoded bounded
(``vggvox.audio.load_audio``). A separate process like any client, so that the
daemon keeps no network access.
"""

from __future__ import annotations

import json
import logging
import queue
import tempfile
import threading
from collections.abc import Sequence
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import zmq

from vggvox.audio import load_audio
from vggvox.errors import AudioError, VggvoxError
from vggvox.protocol.errors import BUSY, INTERNAL, NOT_ALLOWED, STORE, UNREACHABLE
from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.requests import EnrollRequest, ListRequest, StatusRequest
from vggvox_client.bridges.web import peer
from vggvox_client.bridges.web.hub import EventHub, page_state
from vggvox_client.bridges.web.requestcheck import (
    Guard,
    banner,
    generated_token,
    kept_token,
    parse_listen,
    read_kept_token,
    read_token_file,
)
from vggvox_client.bridges.web.server import BoundedHandler, Limits, Server
from vggvox_client.connection import ClientError, Connection

__all__ = ["Limits", "parse_listen", "run"]

log = logging.getLogger(__name__)

MAX_UPLOAD = Limits.upload_bytes
ENROLL_MAX_S = 120.0
"""The daemon's default enrollment maximum (enroll.max_audio_s), used when its status
does not say."""
NEEDS_TOKEN = ("this page needs its token: open the URL that vggvox-client web printed when "
               "it started (http://HOST:PORT/?token=...), or ask whoever started it; it "
               "keeps the token in {file} in its runtime folder")
STATUS = {NOT_ALLOWED: 403, STORE: 503, BUSY: 503, UNREACHABLE: 503, INTERNAL: 500}
"""The HTTP status of a daemon's error code (docs/control.md); any other is the
request's fault (bad_request, voice_mismatch, input_too_short, ...): 400."""
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                      "style-src 'unsafe-inline'; frame-ancestors 'none'"}


class Handler(BoundedHandler):
    conn: Connection
    control: Path | None
    """The daemon's ipc control socket, whose permissions say which local users may use
    the page too (``peer.py``); None for a tcp:// daemon."""
    guard: Guard
    hub: EventHub
    stop: threading.Event
    server: Server
    server_version = "vggvox-web"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, code: int, body: bytes, kind: str, **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**HEADERS, **headers}.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: dict[str, Any]) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    def _error(self, code: int, text: str) -> None:
        self._json(code, {"error": text})

    fail = _error

    def _admitted(self) -> dict[str, list[str]] | None:
        """The query, when Host, local user and token are right; else answered (421,
        403) and None."""
        if not self.guard.host_ok(self.headers.get("Host")):
            self._error(HTTPStatus.MISDIRECTED_REQUEST,
                        f"this server does not serve Host {self.headers.get('Host')!r}")
            return None
        why = None if self.control is None else peer.refusal(
            self.control, self.client_address, self.connection.getsockname())
        if why is not None:
            self._error(403, why)
            return None
        query = parse_qs(urlparse(self.path).query)
        if not self.guard.authorized(self.headers, query):
            text = NEEDS_TOKEN.format(file=f"web-{self.guard.port}.token")
            if "text/html" in (self.headers.get("Accept") or ""):
                self._send(403, f"<!doctype html><p>{text}.</p>\n".encode(),
                           "text/html; charset=utf-8")
            else:
                self._error(403, text)
            return None
        return query

    def do_GET(self) -> None:
        query = self._admitted()
        if query is None:
            return
        path = urlparse(self.path).path
        if path == "/" and "token" in query:  # set the cookie, and take the token out of sight
            return self._send(303, b"", "text/plain", Location="/",
                              Set_Cookie=self.guard.set_cookie())
        if path == "/":
            page = resources.files("vggvox_client.bridges.web").joinpath("page.html").read_text()
            return self._send(200, page.replace("{{csrf}}", self.guard.csrf).encode(),
                              "text/html; charset=utf-8")
        if path == "/state":
            return self._json(200, page_state(self.hub, self.conn))
        if path == "/speakers":
            try:
                return self._json(200, self.conn.send(ListRequest(), timeout=5))
            except ClientError as e:
                return self._error(STATUS.get(e.code, 503), str(e))
            except (zmq.ZMQError, OSError) as e:  # OSError: no file left
                return self._error(503, f"cannot reach vggvoxd: {e}")
        if path == "/events":
            return self._events()
        return self._error(404, f"no {path}")

    def do_POST(self) -> None:
        query = self._admitted()
        if query is None:
            return
        path = urlparse(self.path).path
        why = self.guard.cross_site(self.headers)
        if why:
            return self._error(403, f"refused: {why}")
        if path != "/enroll":
            return self._error(404, f"no {path}")
        name = (query.get("name") or [""])[0].strip()
        size = self.headers.get("Content-Length") or ""
        if not name or not size.isdigit() or int(size) == 0:
            return self._error(400, "give ?name= and an audio file as the body")
        if int(size) > self.limits.upload_bytes:
            return self._error(413, f"the upload is over {self.limits.upload_bytes >> 20} MB")
        if not self.server.uploads.acquire(blocking=False):
            return self._error(503, f"busy: {self.limits.uploads} uploads are being read; "
                                    "retry in a moment")
        try:
            code, reply = self._enroll(name, int(size))
        finally:
            self.server.uploads.release()
        self._json(code, reply)

    def _enroll(self, name: str, size: int) -> tuple[int, dict[str, Any]]:
        with tempfile.NamedTemporaryFile(prefix="vggvox-web-", suffix=".upload") as f:
            short = self.read_body(f, size)
            if short is not None:
                return short[0], {"error": short[1]}
            f.flush()
            try:
                status = self.conn.send(StatusRequest(), timeout=5)
                audio = load_audio(f.name, max_seconds=float(
                    status.get("enroll_max_audio_s") or ENROLL_MAX_S))
                reply = self.conn.send(EnrollRequest(name=name, audio=[to_pcm(audio)]),
                                       timeout=60)
            except AudioError as e:
                return 400, {"error": f"the upload: {e.reason}"}
            except ClientError as e:
                return STATUS.get(e.code, 400), {"error": str(e), "code": e.code}
            except (zmq.ZMQError, OSError) as e:  # OSError: no file left for the socket
                return 503, {"error": f"cannot reach vggvoxd: {e}"}
        return 200, reply

    def _events(self) -> None:
        stream = self.hub.open()
        if stream is None:
            return self._error(503, f"busy: {self.hub.max_streams} event streams are open")
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            for k, v in HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(b"retry: 3000\n\n")
            while not self.stop.is_set() and not stream.lagging:
                try:
                    ev = stream.events.get(timeout=1.0)
                    line = f"data: {json.dumps(ev)}\n\n"
                except queue.Empty:  # a comment line, so that a closed page shows up
                    line = ": idle\n\n"
                self.wfile.write(line.encode())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the browser went away, or stopped reading
        finally:
            self.hub.close(stream)


def run(conn: Connection, listen: str, token_file: Path | None,
        allow_hosts: Sequence[str] = (), print_url: bool = False,
        limits: Limits | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C (exit 0); with ``print_url``, print the page's URL
    with its token (as its starter: the token's file is theirs) and exit."""
    import signal

    token = read_token_file(token_file) if token_file is not None else None
    host, port = parse_listen(listen, token)
    if print_url:  # only read: a token written now would not be the running bridge's
        print(f"http://{listen}/?token={quote(token or read_kept_token(port, listen), safe='')}")
        return 0
    kept = None
    if token is None:
        kept = kept_token(port)
        token = generated_token(kept)
    url = f"http://{listen}/?token={quote(token, safe='')}"
    limits = (limits or Limits()).fitted()
    stop = threading.Event()
    hub = EventHub(conn, limits.streams, stop).start()
    guard = Guard(host, port, token, allow_hosts)
    handler = type("BoundHandler", (Handler,), {"conn": conn, "guard": guard, "hub": hub,
                                                "stop": stop, "limits": limits,
                                                "control": _control_socket(conn)})
    try:
        server = Server((host, port), handler, limits)
    except OSError as e:
        raise VggvoxError(f"--listen {listen}: cannot listen there: {e.strerror}") from None

    def shut(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut)
    print(banner(listen, url, token_file, kept), flush=True)
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    return 0


def _control_socket(conn: Connection) -> Path | None:
    if not conn.control.startswith("ipc://"):
        return None  # a CURVE daemon's keys, not file modes, say who may use it
    if not peer.readable():
        log.warning("cannot see who owns the sockets connecting (no sock_diag netlink, no "
                    "/proc/self/net/tcp): every connection from this machine will be refused")
    return Path(conn.control.removeprefix("ipc://"))
