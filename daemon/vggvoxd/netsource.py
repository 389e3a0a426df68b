"""Network audio: an RTSP, RTP, UDP or HTTP(S) stream, decoded by FFmpeg through PyAV,
resampled to 16 kHz mono, delivered live (``vggvoxd.neturl``: the URLs).

    [thread: connect -> demux -> decode -> resample -> sink] -> lost -> back-off -> connect ...

The source keeps its own link: a network stream that ends or fails is a peer gone
away, not an end, so its thread reconnects by itself, waiting 0.5 s, then twice as
long each time up to 30 s, and from 0.5 s again once a stream has played for a
healthy period. Its ``link`` (``waiting`` before the first audio, ``running``,
``lost``) is what its ``LiveSource`` shows in ``status`` and the metrics; an
outage is logged once when it begins and once when it ends, whatever the
attempts between. A source that listens (a UDP port, RTSP in listen mode) has no
peer to spare: it listens again at once.

Every open and every read has a deadline (PyAV's interrupt callback: ``OPEN_S``,
``READ_S``), so a dead peer, or one that stops sending, never holds the thread.
It is live: what arrives faster than the pipeline takes it (a server's burst on
connecting) overwrites the oldest audio in the ring buffer, counted as a
microphone's is. Packet loss (RTP over UDP) shortens the stream clock.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Any

import av
import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvoxd import neturl
from vggvoxd.sources import Sink, ThreadSource

log = logging.getLogger(__name__)

OPEN_S = 10.0
"""How long an open may take: connecting, the server's answer, and the first audio."""
READ_S = 5.0
"""How long a running stream may send nothing before it is lost."""
BACKOFF_S = (0.5, 30.0)
"""The first and the longest wait between attempts to reach a server."""
HEALTHY_S = 10.0
"""A stream that played this long starts its next outage's back-off afresh."""


class NetSource(ThreadSource):
    """A network audio stream, reconnected with back-off for as long as it runs."""

    def __init__(self, url: str, name: str, options: dict[str, str] | None = None,
                 open_s: float = OPEN_S, read_s: float = READ_S) -> None:
        super().__init__(neturl.shown(name))
        self.url = url
        self.shown = neturl.shown(url)
        given = dict(options or {})
        self.options = neturl.options(url, given)
        self.listens = neturl.listens(url, given)
        self.verifies = (neturl.scheme_of(url) in neturl.TLS_SCHEMES
                         and self.options.get("tls_verify") == "1")
        # RTSP in listen mode waits for its publisher first: that wait is not the open's.
        try:
            listen = max(0.0, float(self.options.get("listen_timeout", 0)))
        except ValueError:
            listen = 0.0  # FFmpeg refuses it on opening: a failure, logged as any other
        self.timeout = (open_s + listen, read_s)
        self._link = "waiting"
        self._said_hls = False
        self._down_since: float | None = None
        self._played: float | None = None
        """When this connection's audio began (monotonic); None before it did."""

    @property
    def link(self) -> str | None:
        """``waiting``, ``running`` or ``lost`` while its thread runs; None before."""
        return self._link if self.alive() else None

    def _run(self, sink: Sink) -> None:
        backoff = BACKOFF_S[0]
        while not self._stop.is_set():
            began, self._played = time.monotonic(), None
            try:
                self._play(sink)
                why = "the stream ended"
            except (av.FFmpegError, OSError, ValueError, RuntimeError) as e:
                why = self._why(e)
            if self._stop.is_set():
                return
            self._went_down(why)
            if self._played is not None and time.monotonic() - self._played >= HEALTHY_S:
                backoff = BACKOFF_S[0]  # after a healthy spell, an outage starts afresh
            wait = BACKOFF_S[0] if self.listens else backoff
            log.debug("%s: %s (after %.1f s); next try in %.2f s", self.name, why,
                      time.monotonic() - began, wait)
            self._stop.wait(wait)
            backoff = min(2 * backoff, BACKOFF_S[1])

    def _why(self, e: Exception) -> str:
        """An error in words, never with the URL as written (its password): FFmpeg's
        errors carry it as their ``filename``."""
        text = str(getattr(e, "strerror", None) or str(e) or type(e).__name__)
        if self.verifies and neturl.scheme_of(self.url) == "https" \
                and getattr(e, "errno", None) == errno.EIO:
            # All FFmpeg says of a certificate it does not trust.
            text += ("; if the server's certificate is not trusted, give its CA as the "
                     "source's options.ca_file")
        return text.replace(self.url, self.shown)

    def _check_ca_file(self) -> None:
        """A CA file that cannot be read, said so: FFmpeg refuses every certificate then,
        and says only 'Input/output error'."""
        path = self.options.get("cafile") or self.options.get("ca_file")
        if self.verifies and path and not os.access(path, os.R_OK):
            raise OSError(f"its options.ca_file {path} cannot be read")

    def _hls_unverified(self, demuxer: str) -> None:
        """Say once that an HLS playlist's segments are not verified: FFmpeg hands them
        no TLS options (only headers, user_agent, cookies, proxy), so each segment's
        server is taken on trust even where the playlist's certificate was checked."""
        if self.verifies and demuxer == "hls" and not self._said_hls:
            self._said_hls = True
            log.warning("%s: %s is HLS: its playlist's certificate is verified, its "
                        "segments' are not (FFmpeg gives them no TLS options)",
                        self.name, self.shown)

    def _went_down(self, why: str) -> None:
        """Log the start of an outage once: the stream lost, or a first open failing."""
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        if self._link == "running":
            self._link = "lost"
            log.warning("%s: stream %s lost (%s); reconnecting", self.name, self.shown, why)
        else:
            log.warning("%s: cannot play %s yet (%s); %s", self.name, self.shown, why,
                        "listening again" if self.listens else "retrying with back-off")

    def _play(self, sink: Sink) -> None:
        """Open, decode and deliver until the stream ends or fails (raised); when its
        audio began goes in ``_played``."""
        self._check_ca_file()
        with av.open(neturl.target(self.url), options=self.options,
                     timeout=self.timeout) as container:
            if not container.streams.audio:
                raise ValueError("no audio stream in it")
            stream = container.streams.audio[0]
            self._hls_unverified(container.format.name)
            resampler = Resampler()
            for packet in container.demux(stream):
                if self._stop.is_set():
                    break
                for block in self._decode(packet, resampler):
                    if self._played is None:
                        self._played = time.monotonic()
                        self._came_back()
                    sink(block)

    def _decode(self, packet: Any, resampler: Resampler) -> list[np.ndarray]:
        """The packet's audio at 16 kHz mono; nothing for a corrupt packet (a lost
        RTP packet garbles one frame, not the stream)."""
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            return []
        return [block for frame in frames for block in resampler(frame)]

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.info("%s: stream %s %s after %.1f s", self.name, self.shown,
                     "back" if self._link == "lost" else "playing",
                     time.monotonic() - self._down_since)
        elif self._link == "waiting":
            log.info("%s: playing %s", self.name, self.shown)
        self._down_since = None
        self._link = "running"


class Resampler:
    """Frames to 16 kHz mono int16, whatever each one's rate and layout: an MP3 stream
    may change its rate between frames, and HLS between variants, where one
    ``av.AudioResampler`` refuses a frame unlike its first."""

    def __init__(self) -> None:
        self._shape: tuple[str, str, int] | None = None
        self._resampler: Any = None

    def __call__(self, frame: Any) -> list[np.ndarray]:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._shape:
            self._shape = shape
            self._resampler = av.AudioResampler(format="s16", layout="mono",
                                                rate=SAMPLE_RATE)
        return [f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                for f in self._resampler.resample(frame) if f.samples]
