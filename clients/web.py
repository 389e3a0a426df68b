"""``vggvox-client web``: a web page of who is speaking, fed by server-sent events.

    vggvox-client web [--listen 127.0.0.1:8765] [--token-file F]

- ``/``: the page (``webpage.html``): per source, the current speaker and a
  timeline of the last 60 s of turns; the enrolled speakers; a form to enroll
  a new speaker from an uploaded file.
- ``/events``: the daemon's ``turn``, ``speech.end`` and ``status`` events as
  server-sent events (one JSON object each). Every browser gets its own
  subscription to the daemon, in its own thread (``ThreadingHTTPServer``).
- ``/speakers`` (GET): the daemon's ``list`` reply; ``/enroll`` (POST, the
  upload's bytes, ``?name=``): an enrollment through the daemon, as ``enroll``.

It serves loopback only unless a token is given: an address off loopback needs
``--token-file``, and then every request must carry ``?token=`` (the page
passes it on). A separate process like any client, so that the daemon keeps no
network access.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from vggvox.errors import VggvoxError
from vggvox_client.connection import ClientError, Connection

log = logging.getLogger(__name__)

MAX_UPLOAD = 32 << 20
"""Largest enrollment upload (bytes): the daemon takes at most 120 s of audio anyway."""


def parse_listen(spec: str, token: str | None) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VggvoxError(f"--listen must be HOST:PORT, got {spec!r}")
    host = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise VggvoxError(f"--listen {spec} is not loopback: give --token-file, whose token "
                          "every request must then carry")
    return host, int(port)


class Handler(BaseHTTPRequestHandler):
    conn: Connection
    token: str | None
    stop: threading.Event
    server_version = "vggvox-web"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _allowed(self, query: dict[str, list[str]]) -> bool:
        if self.token is None:
            return True
        given = (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, data: dict[str, Any]) -> None:
        self._send(code, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            return self._json(403, {"error": "a valid ?token= is needed"})
        if url.path == "/":
            page = resources.files("vggvox_client").joinpath("webpage.html").read_bytes()
            return self._send(200, page, "text/html; charset=utf-8")
        if url.path == "/speakers":
            try:
                return self._json(200, self.conn.request("list"))
            except ClientError as e:
                return self._json(503, {"error": str(e)})
        if url.path == "/events":
            return self._events()
        return self._json(404, {"error": f"no {url.path}"})

    def do_POST(self) -> None:
        from vggvox_client import live

        url = urlparse(self.path)
        query = parse_qs(url.query)
        if not self._allowed(query):
            return self._json(403, {"error": "a valid ?token= is needed"})
        if url.path != "/enroll":
            return self._json(404, {"error": f"no {url.path}"})
        name = (query.get("name") or [""])[0].strip()
        size = int(self.headers.get("Content-Length") or 0)
        if not name or not 0 < size <= MAX_UPLOAD:
            return self._json(400, {"error": f"give ?name= and an audio file of at most "
                                             f"{MAX_UPLOAD >> 20} MB"})
        with tempfile.NamedTemporaryFile(suffix=".audio") as f:
            f.write(self.rfile.read(size))
            f.flush()
            try:
                reply = live.enroll(self.conn, name, [Path(f.name)], None, False, MAX_UPLOAD)
            except (ClientError, VggvoxError) as e:
                return self._json(400, {"error": str(e).replace(f.name, "the upload")})
        return self._json(200, reply)

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sock = self.conn.subscribe(["turn", "speech.end", "status"])
        try:
            while not self.stop.is_set():
                ev = self.conn.receive(sock, 1.0)
                # A comment line when idle: a closed page shows up as a failed write.
                line = f"data: {json.dumps(ev)}\n\n" if ev is not None else ": idle\n\n"
                self.wfile.write(line.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        finally:
            sock.close()


def run(conn: Connection, listen: str, token_file: Path | None) -> int:
    """Serve until SIGTERM or Ctrl-C (exit 0)."""
    import signal

    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip() or None
        except OSError as e:
            raise VggvoxError(f"--token-file {token_file}: cannot read it: {e.strerror}") from None
        if token is None:
            raise VggvoxError(f"--token-file {token_file} is empty")
    host, port = parse_listen(listen, token)
    stop = threading.Event()
    handler = type("BoundHandler", (Handler,), {"conn": conn, "token": token, "stop": stop})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise VggvoxError(f"--listen {listen}: cannot listen there: {e.strerror}") from None
    server.daemon_threads = True

    def shut(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shut)
    print(f"vggvox web page on http://{listen}/" + (" (with ?token=...)" if token else ""),
          flush=True)
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    return 0
