"""Real audio streams on loopback, muxed by PyAV (FFmpeg), for network sources' tests
and bench/bench_netsource.py: an HTTP(S) server of a growing Ogg/Opus (or WAV) stream,
an RTP sender with its SDP, RTP of a static payload type and MPEG-TS to a UDP port, and an
RTSP publisher (FFmpeg's rtsp muxer, pushing to a reader in listen mode: a publisher
must run in another process than its reader, whose open it would hold up, holding
the GIL through its handshake).

Each sends silence until ``go`` is set, then its clip at real-time pace, then silence,
until stopped, and records when it sent each block of the clip (``sent``: (sample of
the clip, wall time)), for latencies.
"""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

RATE = 16000
BLOCK = 320
"""20 ms blocks, as a microphone's."""


def play(write: Callable[[av.AudioFrame], None], clip: np.ndarray, stop: threading.Event,
         go: threading.Event, sent: list[tuple[int, float]], rate: int = RATE) -> None:
    """Silence until ``go``, then ``clip`` (int16 at 16 kHz), then silence, block by
    block at real-time pace."""
    t0, pos, at = time.monotonic(), 0, -1
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    while not stop.is_set():
        if at < 0 and go.is_set():
            at = pos
        k = pos - at if at >= 0 else len(clip)
        block = np.pad(clip[k:k + BLOCK], (0, max(0, BLOCK - len(clip[k:k + BLOCK]))))
        frame = av.AudioFrame.from_ndarray(block[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, pos
        for out in resampler.resample(frame):
            write(out)
        if 0 <= k < len(clip):
            sent.append((k, time.time()))
        pos += BLOCK
        stop.wait(max(0.0, t0 + pos / RATE - time.monotonic()))


def stream(target: Any, fmt: str, codec: str, rate: int, clip: np.ndarray,
           stop: threading.Event, go: threading.Event, sent: list[tuple[int, float]],
           **open_args: Any) -> None:
    """``play`` into a container that FFmpeg's ``fmt`` muxer writes to ``target`` (a
    URL, or a file object), its audio encoded by ``codec`` at ``rate``."""
    with av.open(target, "w", format=fmt, **open_args) as container:
        audio = container.add_stream(codec, rate=rate, layout="mono")

        def write(frame: av.AudioFrame) -> None:
            for packet in audio.encode(frame):
                container.mux(packet)

        play(write, clip, stop, go, sent, rate)


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address or a DNS name), signed by its own key,
    made by the ``openssl`` command: (certificate, key), PEM files in ``folder``."""
    cert, key = folder / f"{host}.crt", folder / f"{host}.key"
    kind = "IP" if host.replace(".", "").isdigit() else "DNS"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName={kind}:{host}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class HttpStream:
    """An HTTP server on 127.0.0.1 whose every GET is a live stream of ``clip``; HTTPS
    with ``tls``, a (certificate, key) pair of PEM files."""

    def __init__(self, clip: np.ndarray, fmt: str = "ogg", port: int = 0,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.clip, self.fmt, self.scheme = clip, fmt, "https" if tls else "http"
        self.sent: list[tuple[int, float]] = []
        self.requests = 0
        self._stop = threading.Event()
        self.go = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        if tls is not None:
            tls_server(self._server, tls)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/live.{self.fmt}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stream.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", f"audio/{stream.fmt}")
                self.end_headers()
                stream._serve(self.wfile)

        return Handler

    def _serve(self, out: Any) -> None:
        codec, rate = ("libopus", 48000) if self.fmt == "ogg" else ("pcm_s16le", RATE)
        # Each packet written at once, and Ogg pages of 20 ms (not 1 s): a live stream.
        options = {"flush_packets": "1", **({"page_duration": "20000"}
                                            if self.fmt == "ogg" else {})}
        try:
            stream(out, self.fmt, codec, rate, self.clip, self._stop, self.go, self.sent,
                   options=options, buffer_size=4096)
        except (OSError, av.FFmpegError, ValueError):
            pass  # the client went away, or we were stopped mid-write

    def stop(self) -> None:
        """Go away: the listener closed, every stream cut."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def tls_server(server: http.server.HTTPServer, tls: tuple[Path, Path]) -> None:
    """``server`` made an HTTPS one, with ``tls``'s (certificate, key)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    # A client that refuses the certificate fails the handshake in accept(): an OSError,
    # which the server ignores.
    server.socket = context.wrap_socket(server.socket, server_side=True)


class FileServer:
    """An HTTPS server on 127.0.0.1 of the files in ``folder`` (an HLS playlist and its
    segments)."""

    def __init__(self, folder: Path, tls: tuple[Path, Path]) -> None:
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        self._server.daemon_threads = True
        tls_server(self._server, tls)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def hls_files(folder: Path, clip: np.ndarray) -> Path:
    """``clip`` as an HLS playlist of AAC segments of 1 s in ``folder``: its path."""
    playlist = folder / "live.m3u8"
    with av.open(str(playlist), "w", format="hls",
                 options={"hls_time": "1", "hls_list_size": "0"}) as container:
        audio = container.add_stream("aac", rate=RATE, layout="mono")
        for k in range(0, len(clip), 1024):
            frame = av.AudioFrame.from_ndarray(clip[None, k:k + 1024], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = RATE, k
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return playlist


class RtpStream:
    """RTP (L16 at 16 kHz, a dynamic payload type) sent to a UDP port on 127.0.0.1,
    and the SDP that describes it (FFmpeg reads such RTP only with one)."""

    def __init__(self, clip: np.ndarray) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1] & ~1  # RTP on an even port, RTCP the next
        self.clip = clip
        self.sent: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self.go = threading.Event()
        self._thread: threading.Thread | None = None

    def sdp(self) -> str:
        return (f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=test\nc=IN IP4 127.0.0.1\nt=0 0\n"
                f"m=audio {self.port} RTP/AVP 97\na=rtpmap:97 L16/16000/1\n")

    def start(self) -> RtpStream:
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()
        return self

    def _send(self) -> None:
        stream(f"rtp://127.0.0.1:{self.port}", "rtp", "pcm_s16be", RATE, self.clip,
               self._stop, self.go, self.sent)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def multicast_on_loopback(group: str, port: int) -> bool:
    """Whether a datagram sent to ``group`` by 127.0.0.1 reaches a socket that joined it
    there (not in every container: the loopback interface has no MULTICAST flag)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        try:
            rx.bind((group, port))
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                          socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            rx.settimeout(1.0)
            tx.sendto(b"?", (group, port))
            return rx.recv(16) == b"?"
        except OSError:
            return False


class UdpSender:
    """``clip`` sent to a UDP port on 127.0.0.1 by one of FFmpeg's muxers: ``rtp`` with
    G.711 (a static payload type, read with no SDP), or ``mpegts`` with MP2 audio;
    ``multicast``: MPEG-TS to a group of this process's own (239.255.x.y), by loopback
    and no further (TTL 0), read with ``options`` (join it on 127.0.0.1)."""

    def __init__(self, kind: str, clip: np.ndarray) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1] & ~1
        pid = os.getpid()
        host = f"239.255.{pid >> 8 & 255}.{pid & 255 or 1}" if kind == "multicast" \
            else "127.0.0.1"
        self.kind, self.clip, self.host = kind, clip, host
        self.url = f"{'rtp' if kind == 'rtp' else 'udp'}://{host}:{self.port}"
        self.options = {"localaddr": "127.0.0.1"} if kind == "multicast" else {}
        self.sent: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self._thread = threading.Thread(target=self._send, daemon=True)

    def start(self) -> UdpSender:
        self._thread.start()
        return self

    def _send(self) -> None:
        fmt, codec, rate = {"rtp": ("rtp", "pcm_mulaw", 8000),
                            "udp": ("mpegts", "mp2", RATE),
                            "multicast": ("mpegts", "mp2", RATE)}[self.kind]
        url = self.url + ("?localaddr=127.0.0.1&ttl=0" if self.kind == "multicast" else "")
        stream(url, fmt, codec, rate, self.clip, self._stop, self.go, self.sent)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class RtspPublisher:
    """Pushes ``clip`` with FFmpeg's rtsp muxer (ANNOUNCE, RECORD, RTP over TCP) to an
    RTSP reader in listen mode at ``url``; retries until one listens."""

    def __init__(self, url: str, clip: np.ndarray) -> None:
        self.url, self.clip = url, clip
        self.sent: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self.go = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RtspPublisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stream(self.url, "rtsp", "pcm_mulaw", 8000, self.clip, self._stop,
                       self.go, self.sent, options={"rtsp_transport": "tcp"}, timeout=5)
            except (OSError, av.FFmpegError):
                self._stop.wait(0.2)  # nobody listens yet

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
