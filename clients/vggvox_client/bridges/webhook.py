"""``vggvox-client webhook``: each final turn, POSTed as JSON to a URL (docs/bridges.md).

News, never history: a bounded queue (``Webhook``), turns dropped once older than
``--max-age``, failed posts retried with back-off, in order; redirects only to the
same scheme, host and port (``opener``). The URL's path and query are never
logged: they may hold the hook's secret.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from vggvox import __version__
from vggvox.errors import VggvoxError
from vggvox.protocol.events import StatusEvent, TurnEvent, from_payload
from vggvox_client.bridges import Bridge
from vggvox_client.bridges.speaking import SpeakingState, born

if TYPE_CHECKING:
    from urllib.request import OpenerDirector

    from vggvox_client.connection import Connection

log = logging.getLogger(__name__)

MAX_HELD = 64
"""Turns waiting to be posted; beyond, the oldest is dropped."""
MAX_AGE_S = 30.0
"""A turn not posted this long after its event was made is history: dropped."""
POST_TIMEOUT_S = 5.0
BACKOFF_S = (0.5, 8.0)
"""The first retry's wait, and the most it doubles to."""
RETRY = frozenset({408, 425, 429})
"""HTTP answers (besides 5xx) that say: the same post may pass later."""
REPLY_BYTES = 64 << 10
"""Of a reply's body, what is read (and ignored) before the connection is closed."""


class Outcome(NamedTuple):
    ok: bool
    retry: bool = False
    why: str = ""


def parse_url(url: str) -> str:
    """``url`` if it is one the bridge can post to; else a one-line VggvoxError."""
    why = flaw(url)
    if why:
        raise VggvoxError(f"--url must be http(s)://HOST[:PORT][/PATH] ({why}), got {url!r}")
    return url


def flaw(url: str) -> str:
    """What makes ``url`` one the bridge cannot post to; empty if nothing."""
    parts = urlsplit(url)
    try:
        _ = parts.port  # raises for a port out of range, or not a number
    except ValueError:
        return "its port is not a number from 1 to 65535"
    if parts.scheme not in ("http", "https"):
        return "it is not http:// or https://"
    if not parts.hostname:
        return "it has no host"
    if parts.username or parts.password:
        return "user:password@ is not sent"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it has spaces or control characters"
    return ""


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what a redirect may not change."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def opener() -> OpenerDirector:
    """urllib's opener with its redirects limited (above). Built on first use: urllib's
    HTTP stack is not loaded for every command of the client."""
    import urllib.request

    class SameOrigin(urllib.request.HTTPRedirectHandler):
        max_redirections = 3

        def redirect_request(self, req: urllib.request.Request, fp: object, code: int,
                             msg: str, headers: object, newurl: str
                             ) -> urllib.request.Request | None:
            if code in (307, 308) and origin(newurl) == origin(req.full_url):
                return urllib.request.Request(newurl, data=req.data, method="POST",
                                              headers=dict(req.header_items()))
            return None  # not followed: the 3xx is the answer

    return urllib.request.build_opener(SameOrigin)


class Poster:
    """One POST of a body to the URL, and what came of it."""

    def __init__(self, url: str, timeout: float = POST_TIMEOUT_S) -> None:
        self.url, self.timeout, self.opener = url, timeout, opener()
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": f"vggvox-webhook/{__version__}"}

    def __call__(self, body: bytes) -> Outcome:
        import http.client
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self.opener.open(req, timeout=self.timeout) as reply:
                reply.read(REPLY_BYTES)
            return Outcome(True)
        except urllib.error.HTTPError as e:
            e.close()
            return answer(e.code, str(e.reason), e.headers.get("Location") if e.headers else None)
        except (OSError, http.client.HTTPException) as e:  # URLError, TimeoutError, ...
            return Outcome(False, True, str(getattr(e, "reason", "") or e) or type(e).__name__)


def answer(code: int, reason: str, location: str | None) -> Outcome:
    """A post's non-2xx answer: retried, or the turn dropped."""
    if code in RETRY or code >= 500:
        return Outcome(False, True, f"HTTP {code} {reason}")
    if 300 <= code < 400:
        return Outcome(False, False, f"HTTP {code} to {location!r}: a redirect is followed only "
                                     "to the same scheme, host and port, with 307 or 308")
    return Outcome(False, False, f"HTTP {code} {reason}: refused")


@dataclass
class Held:
    at: float
    """Monotonic time the event was made (``born``)."""
    body: bytes
    what: str
    """``turn N of SOURCE``, for the log."""


class Webhook:
    """The turns on their way out: a bounded queue, and the loop (``send``) that posts
    them in order, with back-off. Thread-safe: the event loop puts, a thread sends."""

    def __init__(self, post: Callable[[bytes], Outcome], max_age_s: float = MAX_AGE_S,
                 max_held: int = MAX_HELD, backoff: tuple[float, float] = BACKOFF_S) -> None:
        self.post, self.max_age_s, self.max_held, self.backoff = post, max_age_s, max_held, backoff
        self.posted = self.failed = self.dropped = 0
        """Turns posted, posts that failed, turns given up."""
        self._held: deque[Held] = deque()
        self._cond = threading.Condition()
        self._trouble: str | None = None
        """Why posts fail now (logged once), None while they pass."""

    def put(self, body: bytes, ev_time: float, what: str) -> None:
        with self._cond:
            self._held.append(Held(born(ev_time, time.time(), time.monotonic()), body, what))
            self._bound()
            self._cond.notify()

    def _bound(self) -> None:
        while len(self._held) > self.max_held:
            self._held.popleft()
            self._drop(f"more than {self.max_held} turns wait to be posted")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        self._failing(why)

    def _next(self, stop: threading.Event) -> Held | None:
        """The oldest turn that is still news, taken out; None once ``stop`` is set."""
        with self._cond:
            while not stop.is_set():
                while self._held and time.monotonic() - self._held[0].at > self.max_age_s:
                    self._held.popleft()
                    self._drop(f"not posted within {self.max_age_s:g} s")
                if self._held:
                    return self._held.popleft()
                self._cond.wait(0.5)
            return None

    def send(self, stop: threading.Event) -> None:
        """Post until ``stop``: the sending thread."""
        wait = 0.0
        while (held := self._next(stop)) is not None:
            outcome = self.post(held.body)
            with self._cond:
                if outcome.ok:
                    self.posted, wait = self.posted + 1, 0.0
                    self._flowing()
                    continue
                self.failed += 1
                if not outcome.retry:
                    self._drop(f"{held.what} is refused, {outcome.why}")
                    continue
                self._failing(f"{held.what}: {outcome.why}")
                self._held.appendleft(held)  # first again, after the wait
                self._bound()
                wait = min(self.backoff[1], 2 * wait) if wait else self.backoff[0]
            stop.wait(wait)

    def close(self) -> None:
        """At exit: what still waits is dropped; the counts, in one line."""
        with self._cond:
            if self._held:
                self.dropped += len(self._held)
                self._held.clear()
            level = logging.WARNING if self.failed or self.dropped else logging.INFO
            log.log(level, "webhook: %d turns posted, %d posts failed, %d turns dropped",
                    self.posted, self.failed, self.dropped)

    def _failing(self, why: str) -> None:
        """Logged once while turns do not pass (the counts follow when they do)."""
        if self._trouble is None:
            log.warning("turns are not posted: %s (a failed post is retried with back-off "
                        "for up to %g s; a refused one, or an older one, is dropped)",
                        why, self.max_age_s)
            self._trouble = why

    def _flowing(self) -> None:
        if self._trouble is not None:
            log.info("posts pass again; so far %d posted, %d posts failed, %d turns "
                        "dropped", self.posted, self.failed, self.dropped)
            self._trouble = None


LOSS_LOG_S = 10.0
"""Lost events are logged at most this often."""


def follow(conn: Connection, put: Callable[[bytes, float, str], None],
           stop: threading.Event) -> None:
    """The daemon's events into the model, and each final turn to ``put`` (its JSON,
    its event's time, what it is), until ``stop``."""
    state = SpeakingState()
    sock = conn.subscribe()  # every topic: a gap in seq is then loss, not a filter
    said = 0.0
    try:
        while not stop.is_set():
            payload = conn.receive(sock, 0.5)
            if payload is None:
                continue
            missed = state.loss.missed
            try:
                received = from_payload(payload)
            except (ValueError, KeyError, TypeError):  # a topic a newer daemon added
                state.loss.see(int(payload.get("seq") or 0))  # seen, not lost
                continue
            state.apply(received)
            if state.loss.missed > missed and time.monotonic() - said > LOSS_LOG_S:
                said = time.monotonic()
                log.warning("%d events from vggvoxd lost so far (this bridge read too "
                            "slowly): their turns are not posted", state.loss.missed)
            ev = received.event
            if isinstance(ev, TurnEvent) and ev.final:
                put(json.dumps(ev.payload(received.seq)).encode(), ev.time,
                    f"turn {ev.turn} of {ev.source}")
            elif isinstance(ev, StatusEvent) and ev.state == "finished":
                state.forget(ev.source)  # nothing of it follows: replays add sources
    finally:
        sock.close()


def read_url(args: argparse.Namespace) -> str:
    if args.url_file is None:
        return parse_url(args.url)
    try:
        return parse_url(args.url_file.read_text().strip())
    except OSError as e:
        raise VggvoxError(f"--url-file {args.url_file}: cannot read it: {e.strerror}") from None


def run(conn: Connection, args: argparse.Namespace) -> int:
    """Post until SIGTERM or Ctrl-C (exit 0)."""
    import signal

    url = read_url(args)
    if not (args.max_age > 0 and args.post_timeout > 0):
        raise VggvoxError("--max-age and --post-timeout must be more than 0 seconds")
    hook = Webhook(Poster(url, args.post_timeout), args.max_age)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    sender = threading.Thread(target=hook.send, args=(stop,), name="webhook", daemon=True)
    sender.start()
    log.info("posting final turns from %s to %s://%s/...", conn.events, *urlsplit(url)[:2])
    try:
        follow(conn, hook.put, stop)
    finally:
        stop.set()
        sender.join(timeout=args.post_timeout + 1.0)
        hook.close()
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", metavar="URL",
                       help="where to POST each final turn: http(s)://HOST[:PORT][/PATH]")
    where.add_argument("--url-file", type=Path, metavar="F",
                       help="a file holding the URL, for one with a secret in it (a command "
                            "line is seen by every local user)")
    p.add_argument("--max-age", type=float, default=MAX_AGE_S, metavar="S",
                   help="drop a turn not posted within S seconds of its event (default "
                        "%(default)g): news, never history")
    p.add_argument("--post-timeout", type=float, default=POST_TIMEOUT_S, metavar="S",
                   help="seconds to wait for the server to connect and answer each step of "
                        "a post (default %(default)g)")


BRIDGE = Bridge(
    name="webhook",
    help="POST each final turn as JSON to a URL, retried with back-off (runs until stopped)",
    examples="""examples:
  vggvox-client webhook --url http://127.0.0.1:8123/api/webhook/vggvox
  vggvox-client webhook --url-file /etc/vggvox/webhook-url --max-age 10
The body is the turn event as 'vggvox-client listen --json' prints it. A failed
post is retried after 0.5 s, then 1, 2, 4, 8 s; a turn older than --max-age,
beyond 64 waiting, refused (4xx) or redirected elsewhere is dropped. As a
service: systemd/vggvox-bridge@.service, instance webhook.""",
    add_arguments=add_arguments, run=run)
