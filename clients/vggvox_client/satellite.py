"""``vggvox-client satellite``: a remote microphone that streams to a daemon.

    capture (PortAudio's callback, or a file's thread) -> RingBuffer (--buffer-s)
        -> [main thread: Uplink, the one DEALER socket] -> daemon's satellites socket

The capture only copies into the ring buffer, indexed by the satellite's sample
clock (samples since it started). The main thread owns the socket: it sends
what the ring holds past the last sample sent, one ``pcm`` frame per turn
(``vggvox.protocol.satellite``), and reads the daemon's acks. No ack for
``--timeout-s`` (or none since its hello) and the link is down: it stops
sending, the ring keeps the latest ``--buffer-s`` seconds, and it says hello
again (every 0.25 s, doubling to ``--reconnect-max-s``; ZeroMQ's own reconnects
back off the same way). The daemon's welcome says which sample it needs next:
what the ring still holds from there is sent, what it no longer holds is lost,
counted here (logged, and in every frame) and counted by the daemon as the gap.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from vggvox.audio import SAMPLE_RATE
from vggvox.errors import ConfigError
from vggvox.protocol.errors import RequestError
from vggvox.protocol.satellite import (
    DOWNSTREAM,
    MAX_FRAME_SAMPLES,
    SOCKET_OPTIONS,
    VERSION,
    Bye,
    Hello,
    Message,
    Pcm,
    Ping,
    Refused,
    Welcome,
    decode,
)
from vggvox.stream.ringbuffer import RingBuffer
from vggvox_client.connection import curve_options
from vggvox_client.satellite_capture import Capturer, capture_of

log = logging.getLogger(__name__)

PING_S = 0.5
"""A ping when no audio went out for this long (the capture stalled)."""
FIRST_HELLO_S = 0.25
UNIT = "vggvox-satellite.service"


class Uplink:
    """The satellite's end of the link. Every method runs in the thread that owns the
    socket (``run``'s); the capture only writes the ring buffer."""

    def __init__(self, sock: zmq.Socket, name: str, session: str, ring: RingBuffer,
                 timeout_s: float, reconnect_max_s: float) -> None:
        self.sock, self.name, self.session, self.ring = sock, name, session, ring
        self.timeout_s, self.reconnect_max_s = timeout_s, reconnect_max_s
        self.up = False
        self.next = 0
        """The first sample not yet sent."""
        self.lost = 0
        """Samples the ring no longer held when they were due (the link was down)."""
        self.heard = self.sent = self.down_since = time.monotonic()
        self.joined = False
        """Welcomed once: later welcomes are the link's returns."""
        self._backoff, self._next_hello = FIRST_HELLO_S, 0.0
        self.fatal: str | None = None

    def turn(self, now: float) -> None:
        """Read what the daemon said, then hello or send, as the link's state wants."""
        while self.sock.poll(0):
            self._receive(now)
        if self.up and now - self.heard > self.timeout_s:
            self.up, self.down_since = False, self.heard
            self._backoff, self._next_hello = FIRST_HELLO_S, now
            log.warning("link down: nothing from the daemon for %.1f s; buffering the "
                        "latest %.0f s", now - self.heard, self.ring.capacity / SAMPLE_RATE)
        if not self.up:
            if now >= self._next_hello:
                self._hello(now)
        elif not self._send_audio(now) and now - self.sent > PING_S:
            self._send(Ping(self.lost), now)

    def _hello(self, now: float) -> None:
        ring = self.ring
        if self._send(Hello(VERSION, self.name, self.session, ring.start, ring.end), now):
            self._next_hello = now + self._backoff
            self._backoff = min(2 * self._backoff, self.reconnect_max_s)

    def _send(self, msg: Message, now: float) -> bool:
        """False when ZeroMQ holds no connection to send on (``IMMEDIATE``) or is full."""
        try:
            self.sock.send(msg.encode(), zmq.NOBLOCK)
        except zmq.Again:
            return False
        self.sent = now
        return True

    def _send_audio(self, now: float) -> bool:
        """Send what the ring holds past ``next``; count what it no longer holds."""
        did = False
        end = self.ring.end
        while self.next < end:
            oldest = self.ring.start
            if self.next < oldest:
                self.lost += oldest - self.next
                self.next = oldest
            stop = min(end, self.next + MAX_FRAME_SAMPLES)
            x = self.ring.get(self.next, stop)
            if x is None:
                continue  # overwritten meanwhile: counted on the next pass
            if not self._send(Pcm(self.next, x.astype("<i2").tobytes(), self.lost), now):
                break
            self.next, did = stop, True
        return did

    def _receive(self, now: float) -> None:
        try:
            msg = decode(self.sock.recv(zmq.NOBLOCK), DOWNSTREAM)
        except (zmq.Again, RequestError) as e:
            log.debug("ignored a message from the daemon: %s", e)
            return
        self.heard = now
        if isinstance(msg, Welcome):
            self._welcome(msg, now)
        elif isinstance(msg, Refused):
            was_up, self.up = self.up, False
            if not msg.retry:
                self.fatal = msg.error
            elif was_up or now >= self._next_hello:  # once, not for each frame in flight
                log.warning("the daemon asks again: %s", msg.error)
                self.down_since, self._next_hello = now, now + self._backoff
        # An ack only says the daemon is there (``heard``): where to send from is the
        # welcome's, since this satellite sends everything in order on one connection.

    def _welcome(self, msg: Welcome, now: float) -> None:
        before = self.lost
        wanted = min(max(msg.next, 0), self.ring.end)
        if self.joined and wanted > self.next:
            # A daemon that forgot this satellite (restarted, or it was away longer than
            # satellites.forget_s) starts it afresh: what it skips is lost too.
            self.lost += wanted - self.next
        self.next = wanted
        if self.next < self.ring.start:
            self.lost += self.ring.start - self.next
            self.next = self.ring.start
        if self.up:
            return
        self.up, self._backoff = True, FIRST_HELLO_S
        gone, first, self.joined = now - self.down_since, not self.joined, True
        if first:
            log.info("joined %s as source %s", self.sock.getsockopt_string(zmq.LAST_ENDPOINT),
                     msg.source)
        elif self.lost > before:
            log.warning("link up as source %s, %.1f s after the daemon's last word: %.2f s "
                        "of audio lost (%.2f s since start); sending the %.1f s held",
                        msg.source, gone,
                        (self.lost - before) / SAMPLE_RATE, self.lost / SAMPLE_RATE,
                        (self.ring.end - self.next) / SAMPLE_RATE)
        else:
            log.info("link up as source %s, %.1f s after the daemon's last word; nothing "
                     "lost", msg.source, gone)

    def bye(self) -> None:
        self.sock.setsockopt(zmq.LINGER, 500)
        self._send(Bye(), time.monotonic())


def open_socket(server: str, curve: dict[int, bytes], session: str,
                reconnect_max_s: float) -> zmq.Socket:
    """The DEALER to the daemon: its routing id is the session (a reconnect takes its
    place), messages only go to a live connection (``IMMEDIATE``)."""
    sock: zmq.Socket = zmq.Context.instance().socket(zmq.DEALER)
    options: dict[int, Any] = {
        zmq.LINGER: 0, zmq.IMMEDIATE: 1, zmq.ROUTING_ID: session.encode(),
        zmq.RECONNECT_IVL: 100, zmq.RECONNECT_IVL_MAX: int(reconnect_max_s * 1000),
        zmq.SNDHWM: 1000, **SOCKET_OPTIONS, **curve}
    for option, value in options.items():
        sock.setsockopt(option, value)
    sock.connect(server)
    return sock


def shipped_unit() -> Path:
    """The satellite's unit: the checkout's (systemd/), else pip's copy in share/vggvox."""
    checkout = Path(__file__).resolve().parents[2] / "systemd" / UNIT
    if checkout.is_file():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "vggvox" / UNIT


def run(args: argparse.Namespace) -> int:
    if args.print_unit:
        print(shipped_unit().read_text(), end="")
        return 0
    if not (args.server and args.name):
        raise ConfigError("satellite needs --server ENDPOINT and --name NAME")
    if not (0.5 <= args.buffer_s <= 3600):
        raise ConfigError(f"--buffer-s must be 0.5..3600, got {args.buffer_s:g}")
    try:
        curve = curve_options(args.server_key, args.key)
    except Exception as e:  # ClientError: one line, as every client command says it
        raise ConfigError(str(e)) from None
    capture = capture_of(args.device)
    ring = RingBuffer(round(args.buffer_s * SAMPLE_RATE))
    session = secrets.token_hex(16)
    sock = open_socket(args.server, curve, session, args.reconnect_max_s)
    link = Uplink(sock, args.name, session, ring, args.timeout_s, args.reconnect_max_s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    capturer = Capturer(capture, ring)
    log.info("satellite %s -> %s (buffer %.1f s)", args.name, args.server, args.buffer_s)
    try:
        while not stop.is_set() and link.fatal is None:
            now = time.monotonic()
            capturer.turn(now)
            link.turn(now)
            sock.poll(10)
        if link.fatal is None:
            link.bye()
    finally:
        capture.stop()
        sock.close()
    if link.fatal is not None:
        log.error("the daemon refused this satellite: %s", link.fatal)
        print(f"vggvox-client: error: the daemon refused this satellite: {link.fatal}",
              file=sys.stderr)
        return 1
    log.info("stopped; %.2f s of audio lost in all", link.lost / SAMPLE_RATE)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("satellite", help="stream a microphone to a daemon's satellites socket "
                                         "(a remote microphone; see docs/satellites.md)")
    p.add_argument("--server", metavar="ENDPOINT",
                   help="(required) the daemon's satellites.listen endpoint, e.g. tcp://server:5562")
    p.add_argument("--name",
                   help="(required) the source's name in the daemon's events, e.g. kitchen "
                        "(1 to 64 letters, digits, '.', '_' or '-')")
    p.add_argument("--device", metavar="D",
                   help="input device: index or (part of) a name (default: the system's); "
                        "file:PATH plays a file at real-time pace instead (tests, demos)")
    p.add_argument("--buffer-s", type=float, default=5.0, metavar="S",
                   help="audio kept while the link is down, sent when it returns; what is "
                        "older is lost, and counted (default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=3.0, metavar="S",
                   help="the link is down after this long without a word from the daemon "
                        "(default %(default)s)")
    p.add_argument("--reconnect-max-s", type=float, default=1.0, metavar="S",
                   help="longest wait between reconnection attempts (default %(default)s)")
    p.add_argument("--print-unit", action="store_true",
                   help="print the systemd unit (vggvox-satellite.service) and exit")
