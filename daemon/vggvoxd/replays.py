"""Replay sessions: a client pushes a file's audio through the daemon's own pipeline.

Each session is a finite stream (a ``PushSource``: lossless, it waits for the
pipeline and never loses a window) whose key is the client's secret session
token; its events carry ``replay_source``'s public name. The control thread
opens sessions and pushes audio; the run loop (``reap``) ends abandoned and
stalled ones and drops finished ones; the executor thread reports the end
(``finished``), or the run loop does for a stalled one: whichever claims it
first (``ending``, under the lock), once.

A session ends in one of two ways, each with one ``status`` event ``finished``
once its last window is decided: its client sends ``final``, or it sends nothing
for ``ABANDON_S`` before that (killed mid-file: a live client sends at least once
a second, and every 10 ms while the buffer is full), and then the event carries
``abandoned: true``, so that a bridge can drop the source's entities. A session
that has sent ``final`` is never ended for silence: the client waits for it. But
its slot (one of ``MAX_REPLAYS``) must not be held for good if its end is never
reported (the executor lost the batch that held its last marker, say): once its
input has ended, a session whose stream makes no progress (no audio read, no
window decided) for ``STALL_S`` is ended by the run loop as abandoned, with a
WARNING, and its ``finished`` event is published then.

A finished replay's unknown voices stay nameable for ``KEEP_VOICES_S`` (or
``unknowns.max_age_s`` if shorter) after it ends, the latest ``MAX_KEPT`` of
them: only their clusters are kept (at most ``unknowns.max_clusters`` voices of
``unknowns.keep_speech_s`` each), not the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vggvox.protocol.events import Event, StatusEvent, replay_source
from vggvox.protocol.pcm import from_pcm
from vggvox.protocol.replies import ReplayReply
from vggvox.protocol.requests import ReplayRequest
from vggvox.stream.unknowns import UnknownClusters
from vggvoxd.control import Later, RequestError
from vggvoxd.sources import AudioSource, PushSource
from vggvoxd.streamthread import Stream

log = logging.getLogger(__name__)

MAX_REPLAYS = 4
ABANDON_S = 5.0
"""A session that has not sent ``final`` and is silent this long is ended."""
STALL_S = 60.0
"""A session whose input has ended and whose stream has made no progress this long
without its ``finished`` is ended as abandoned: far longer than any batch of windows
takes to be decided."""
KEEP_VOICES_S = 600.0
"""How long a finished replay's unknown voices can still be named."""
MAX_KEPT = 4
"""Finished replays whose unknown voices are kept, at most (the latest)."""


@dataclass
class ReplaySession:
    stream: Stream
    seen: float
    """Monotonic time of the last request."""
    reported: bool = False
    """Its 'finished' status has been published: safe to drop."""
    ending: bool = False
    """Its 'finished' is claimed (by the executor, or by ``reap`` for a stalled one)."""
    abandoned: bool = False
    """Ended by the daemon: its client fell silent before ``final``, or it stalled."""
    progress: tuple[int, int] = (-1, -1)
    """Once its input has ended: samples read and windows decided, at ``progressed``."""
    progressed: float = 0.0
    """Monotonic time its progress last changed, once its input has ended."""


@dataclass(frozen=True)
class KeptVoices:
    """A finished replay's unknown voices, nameable for a while after it ended."""

    source: str
    unknowns: UnknownClusters
    stream_s: float
    """The replay's clock at its end (dates the ``named`` event)."""
    until: float
    """Monotonic time after which they are forgotten."""


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
    """The open replay sessions, under one lock (control thread, run loop, executor).

    ``new_stream`` makes a session's stream; ``publish`` sends its ``finished``
    event, which carries the queue's length and the voiceprints' count
    (``queued``, ``speakers``); a finished replay's voices are kept ``keep_s``."""

    def __init__(self, new_stream: Callable[[AudioSource], Stream],
                 publish: Callable[[Event], None], queued: Callable[[], int],
                 speakers: Callable[[], int], keep_s: float) -> None:
        self._new_stream, self._publish = new_stream, publish
        self._queued, self._speakers = queued, speakers
        self._sessions: dict[str, ReplaySession] = {}
        self._done = ReplayTotals()
        self._kept: deque[KeptVoices] = deque(maxlen=MAX_KEPT)
        self._lock = threading.Lock()
        self.keep_s = min(KEEP_VOICES_S, keep_s)

    def __len__(self) -> int:
        return len(self._sessions)

    def streams(self) -> list[Stream]:
        with self._lock:
            return [r.stream for r in self._sessions.values()]

    def request(self, req: ReplayRequest, later: Later) -> ReplayReply:
        """The ``replay`` op: push a block of a session's audio (the first opens it)."""
        samples = from_pcm(req.audio, "audio")
        with self._lock:
            entry = self._sessions.get(req.session)
            if entry is None:
                if len(self._sessions) >= MAX_REPLAYS:
                    raise RequestError(f"too many replays at once (at most {MAX_REPLAYS})")
                stream = self._new_stream(PushSource(replay_source(req.session, req.label)))
                stream.start()
                entry = self._sessions[req.session] = ReplaySession(stream, time.monotonic())
            entry.seen = time.monotonic()
            stream = entry.stream
        source = stream.source
        assert isinstance(source, PushSource)
        if source.finished:
            why = (f" (ended after {ABANDON_S:g} s without a request)" if entry.abandoned
                   else "")
            raise RequestError(f"replay {stream.name} is already finished{why}")
        n = min(len(samples), stream.ring.space())
        source.push(samples[:n])
        if req.final and n == len(samples):
            source.finish()
        return ReplayReply(accepted=n, stream_s=stream.stream_s)

    def finished(self, stream: Stream) -> None:
        """Called by the executor after the last window of a replay: tell the client."""
        with self._lock:
            entry = next((r for r in self._sessions.values() if r.stream is stream), None)
            if entry is None or entry.ending:
                return
            entry.ending = True
        self._report(entry)

    def _report(self, entry: ReplaySession) -> None:
        """Publish a session's one 'finished' event (its ``ending`` claimed first)."""
        stream = entry.stream
        t = stream.stream_s
        self._publish(StatusEvent(source=stream.name, t_start=t, t_end=t, state="finished",
                                  dropped_windows=stream.dropped_windows,
                                  queue=self._queued(), speakers=self._speakers(),
                                  abandoned=entry.abandoned))
        entry.reported = True

    def reap(self) -> None:
        """In the run loop: end the sessions whose client fell silent before ``final``
        (their windows are still decided, then ``finished`` says ``abandoned``) and
        those that stalled after their input ended; drop the finished ones, keeping
        their unknown voices a while."""
        now = time.monotonic()
        with self._lock:
            stalled = [r for r in self._sessions.values() if self._ended(r, now)]
            gone = [s for s, r in self._sessions.items() if r.reported]
            streams = [self._sessions.pop(s).stream for s in gone]
            for p in streams:
                self._done += (p.windows_decided, p.turns_decided, p.ring.dropped)
                unknowns = p.recognizer.unknowns
                if unknowns is not None and unknowns.labels():
                    self._kept.append(KeptVoices(p.name, unknowns, p.stream_s,
                                                 now + self.keep_s))
            while self._kept and self._kept[0].until <= now:
                self._kept.popleft()
        for r in stalled:  # dropped by the next reap, once reported
            log.warning("replay %s made no progress for %.0f s after its input ended and "
                        "its end was never reported; ending it as abandoned", r.stream.name,
                        now - r.progressed)
            self._report(r)
        for p in streams:
            p.stop()

    @staticmethod
    def _ended(r: ReplaySession, now: float) -> bool:
        """Under the lock: end ``r`` if its client fell silent before ``final``; True
        if its input ended and it stalled (it is then claimed, as abandoned)."""
        source = r.stream.source
        assert isinstance(source, PushSource)
        if not source.finished:
            if now - r.seen > ABANDON_S:
                r.abandoned = True
                source.finish()
                log.info("replay %s abandoned: no request for %.0f s before its last "
                         "block; ending it", r.stream.name, now - r.seen)
            return False
        if r.ending:
            return False
        progress = (r.stream.frames_seen, r.stream.windows_decided)
        if progress != r.progress:
            r.progress, r.progressed = progress, now
            return False
        if now - r.progressed <= STALL_S:
            return False
        r.ending = r.abandoned = True
        return True

    def kept(self) -> list[KeptVoices]:
        """The finished replays' unknown voices that can still be named."""
        now = time.monotonic()
        with self._lock:
            return [k for k in self._kept if k.until > now]

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
