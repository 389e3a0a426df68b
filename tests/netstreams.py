"""Real audio streams on loopback, muxed by PyAV (FFmpeg), for network sources' tests
and bench/bench_netsource.py: an HTTP server of a growing Ogg/Opus (or WAV) stream,
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
import socket
import threading
import time
from collections.abc import Callable
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


class HttpStream:
    """An HTTP server on 127.0.0.1 whose every GET is a live stream of ``clip``."""

    def __init__(self, clip: np.ndarray, fmt: str = "ogg", port: int = 0) -> None:
        self.clip, self.fmt = clip, fmt
        self.sent: list[tuple[int, float]] = []
        self.requests = 0
        self._stop = threading.Event()
        self.go = threading.Event()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live.{self.fmt}"

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


class UdpSender:
    """``clip`` sent to a UDP port on 127.0.0.1 by one of FFmpeg's muxers: ``rtp`` with
    G.711 (a static payload type, read with no SDP), or ``mpegts`` with MP2 audio."""

    def __init__(self, kind: str, clip: np.ndarray) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1] & ~1
        self.kind, self.clip = kind, clip
        self.url = f"{kind}://127.0.0.1:{self.port}"
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
                            "udp": ("mpegts", "mp2", RATE)}[self.kind]
        stream(self.url, fmt, codec, rate, self.clip, self._stop, self.go, self.sent)

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
