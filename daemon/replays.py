"""Replay sessions: a client pushes a file's audio through the daemon's own pipeline.

Each session is a finite stream (a ``PushSource``: lossless, it waits for the
pipeline and never loses a window) whose key is the client's secret session
token; its events carry ``replay_source``'s public name. The control thread
opens sessions and pushes audio; the run loop reaps finished or abandoned ones.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vggvoxd.control import Later, Reply, RequestError, field
from vggvoxd.events import StatusEvent, replay_source
from vggvoxd.sources import PushSource
from vggvoxd.stream import Stream

if TYPE_CHECKING:
    from vggvoxd.daemon import Daemon

MAX_REPLAYS = 4
MIN_SESSION = 32
"""Shortest replay session token: it is the only key to the session."""
REPLAY_IDLE_S = 60.0


def pcm(blob: Any, what: str) -> np.ndarray:
    """16-bit little-endian mono PCM at 16 kHz, from request bytes."""
    if not isinstance(blob, bytes):
        raise RequestError(f"{what} must be bytes of 16-bit PCM, got {type(blob).__name__}")
    if len(blob) % 2:
        raise RequestError(f"{what} has an odd number of bytes: not 16-bit PCM")
    return np.frombuffer(blob, dtype="<i2").astype(np.int16)


@dataclass
class ReplaySession:
    stream: Stream
    seen: float
    """Monotonic time of the last request."""
    reported: bool = False
    """Its 'finished' status has been published: safe to drop."""


class ReplayTotals:
    """What the replays dropped so far had done (windows, turns, samples lost)."""

    def __init__(self) -> None:
        self.windows = self.turns = self.samples = 0

    def __iadd__(self, counts: tuple[int, int, int]) -> ReplayTotals:
        self.windows += counts[0]
        self.turns += counts[1]
        self.samples += counts[2]
        return self


class Replays:
    """The open replay sessions, under one lock (control thread, run loop, executor)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._sessions: dict[str, ReplaySession] = {}
        self._done = ReplayTotals()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def streams(self) -> list[Stream]:
        with self._lock:
            return [r.stream for r in self._sessions.values()]

    def request(self, req: dict[str, Any], later: Later) -> Reply:
        """The ``replay`` request: push a block of a session's audio (the first opens it)."""
        session = field(req, "session", str)
        if not MIN_SESSION <= len(session) <= 128 or not session.isprintable():
            raise RequestError(f"'session' must be {MIN_SESSION} to 128 printable characters: "
                               "a secret token (e.g. 16 random bytes in hex)")
        label = field(req, "label", str, "")
        if len(label) > 64 or not label.isprintable() or " " in label:
            raise RequestError("'label' must be at most 64 printable characters, no spaces")
        samples = pcm(field(req, "audio", bytes, b""), "audio")
        final = field(req, "final", bool, False)
        with self._lock:
            entry = self._sessions.get(session)
            if entry is None:
                if len(self._sessions) >= MAX_REPLAYS:
                    raise RequestError(f"too many replays at once (at most {MAX_REPLAYS})")
                stream = self.d.stream(PushSource(replay_source(session, label)),
                                       critical=False)
                stream.start()
                entry = self._sessions[session] = ReplaySession(stream, time.monotonic())
            entry.seen = time.monotonic()
            stream = entry.stream
        source = stream.source
        assert isinstance(source, PushSource)
        if source.finished:
            raise RequestError(f"replay {stream.name} is already finished")
        n = min(len(samples), stream.ring.space())
        source.push(samples[:n])
        if final and n == len(samples):
            source.finish()
        return {"ok": True, "accepted": n, "stream_s": stream.stream_s}

    def finished(self, stream: Stream) -> None:
        """Called by the executor after the last window of a replay: tell the client."""
        with self._lock:
            entry = next((r for r in self._sessions.values() if r.stream is stream), None)
        if entry is not None:
            t = stream.stream_s
            self.d.publish(StatusEvent(source=stream.name, t_start=t, t_end=t, state="finished",
                                       dropped_windows=stream.dropped_windows,
                                       queue=len(self.d.queues),
                                       speakers=len(self.d.voiceprints)))
            entry.reported = True

    def reap(self) -> None:
        """Drop finished or abandoned replay sessions."""
        now = time.monotonic()
        with self._lock:
            gone = [s for s, r in self._sessions.items()
                    if r.reported or now - r.seen > REPLAY_IDLE_S]
            streams = [self._sessions.pop(s).stream for s in gone]
            for p in streams:
                self._done += (p.windows_decided, p.turns_decided, p.ring.dropped)
        for p in streams:
            p.stop()

    def totals(self) -> tuple[int, int, int]:
        """Windows and turns decided, and samples dropped, by every replay since start
        (for metrics: counters must not go back when a finished replay is dropped)."""
        with self._lock:
            now = [(r.stream.windows_decided, r.stream.turns_decided, r.stream.ring.dropped)
                   for r in self._sessions.values()]
            done = self._done
        return (done.windows + sum(n[0] for n in now), done.turns + sum(n[1] for n in now),
                done.samples + sum(n[2] for n in now))

    def stop_all(self) -> None:
        with self._lock:
            streams = [r.stream for r in self._sessions.values()]
            self._sessions.clear()
        for p in streams:
            p.stop()
