"""The daemon's live sources, each under supervision.

A daemon listens to one source (``--source``: the microphone, a file, stdin) or
to several at once (``sources:`` in the config: the microphones of several
rooms); what each may be, and how it opens, is its scheme's (``source_schemes``).
Each ``LiveSource`` owns one stream (ring buffer, VAD, windows, its own recognizer)
and its state:

    starting -> running -> lost -> running ...     (restarted with back-off)
             -> waiting (no device yet) -> running
    running  -> finished                          (a file or stdin that ended)

``tick`` is called from the supervisor's run loop (the main thread), which owns
every LiveSource and its state; a source that fails never stops the others. The
executor thread only sets ``flushed`` (a finite source's last window is decided):
the next tick makes that ``finished``. Only a capture device that falls silent is
lost: a pipe may pause for as long as its writer likes.

Dropped audio and windows (a live source that the pipeline could not keep up
with) are logged by ``DropReport``: a WARNING when an episode begins, then at
most one line per ``DROP_REPORT_S`` with the counts, so none is lost silently.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from vggvox.audio import SAMPLE_RATE
from vggvoxd.config import Settings, SourceSpec
from vggvoxd.source_schemes import check_source, find
from vggvoxd.sources import SourceError
from vggvoxd.streamthread import Stream

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
STALL_S = 3.0
"""A running capture device that delivers nothing for this long is treated as lost."""
DROP_REPORT_S = 10.0
"""At most one WARNING per this long about a source's dropped windows and audio."""


def specs(settings: Settings, source: str) -> list[SourceSpec]:
    """The sources to run: the config's ``sources:`` list, or else the one ``--source``
    names (``mic`` with ``audio.device``, ``stdin``, ``file:PATH``), under its old name."""
    if settings.sources:
        return list(settings.sources)
    scheme = find(source)
    name = scheme.one_name or scheme.shown(source)
    if scheme.device:
        return [SourceSpec(name, device=settings.audio.device)]
    return [SourceSpec(name, uri=source)]


def check_specs(settings: Settings, source: str) -> None:
    """Every file a source plays exists and is audio: a ValueError naming it if not."""
    for spec in specs(settings, source):
        if spec.uri is not None:
            check_source(spec.uri, "--source" if not settings.sources
                         else f"source {spec.name!r}")


class DropReport:
    """Logs a live source's dropped windows and overwritten audio: a WARNING at once
    when an episode begins, then at most one per DROP_REPORT_S with what came since."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.windows = self.samples = 0
        """The totals already reported."""
        self._last = -math.inf

    def check(self, now: float, windows: int, samples: int, final: bool = False) -> None:
        """Called each run-loop turn with the totals so far; ``final``: report what is
        left now (the source ended, or the daemon stops)."""
        new_w, new_s = windows - self.windows, samples - self.samples
        if not (new_w or new_s) or (now - self._last < DROP_REPORT_S and not final):
            return
        since = "" if self._last == -math.inf else f" in the last {now - self._last:.0f} s"
        log.warning("%s: dropped %d windows and %.1f s of audio%s: the pipeline fell behind "
                    "this live source (%d windows and %.1f s in all)", self.name, new_w,
                    new_s / SAMPLE_RATE, since, windows, samples / SAMPLE_RATE)
        self.windows, self.samples, self._last = windows, samples, now


class LiveSource:
    """One live source: its stream, its state, and when to try starting it again."""

    def __init__(self, stream: Stream, on_state: Callable[[LiveSource], None]) -> None:
        self.stream = stream
        self.state = "starting"
        self.on_state = on_state
        """Called (in the run loop) after each change of state."""
        self.flushed = threading.Event()
        """Set by the executor thread once a finite source's last window is decided."""
        self.drops = DropReport(stream.name)
        self._backoff = 1.0
        self._next_try = 0.0

    @property
    def name(self) -> str:
        return self.stream.name

    @property
    def ended(self) -> bool:
        """A finite source that has finished: all its windows decided."""
        return self.state == "finished"

    @property
    def may_be_quiet(self) -> bool:
        """No audio from it is no sign of trouble: it has ended, or it is a pipe or a
        file, which may pause or be held back (only a device's silence is loss)."""
        return self.state == "finished" or (self.state == "running"
                                            and not self.stream.source.is_device)

    def details(self) -> dict[str, object]:
        """What ``status`` shows of this source beyond its counts (a satellite's link)."""
        return {}

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(self)

    def report_drops(self, now: float, final: bool = False) -> None:
        s = self.stream
        self.drops.check(now, s.dropped_windows, s.ring.dropped, final)

    def tick(self, now: float) -> None:
        """Start (or restart) the source when due; notice when a running one is lost,
        or a finite one finished. A source that keeps its own link (a network stream)
        reconnects by itself: its link's state is this one's."""
        link = self.stream.source.link
        if link is not None:
            if link == "lost" and self.state == "running":
                self.stream.abandon_taps(f"{self.name} was lost")
            self.set_state(link)
        elif self.state in ("starting", "waiting", "lost") and now >= self._next_try:
            try:
                self.stream.start()
                self.set_state(self.stream.source.link or "running")
                self._backoff = 1.0
            except SourceError as e:
                log.warning("%s: %s; waiting for one (next try in %.0f s)", self.name, e,
                            self._backoff)
                self.set_state("waiting" if self.state == "starting" else self.state)
                self._next_try = now + self._backoff
                self._backoff = min(2 * self._backoff, MAX_BACKOFF_S)
        elif self.state == "running":
            self._watch(now)
        self.report_drops(now, final=self.ended)

    def _watch(self, now: float) -> None:
        stream = self.stream
        if self.flushed.is_set():
            self.set_state("finished")
            return
        if stream.source.finished:
            return  # ended: its last windows are being decided
        # A pipe or a file may pause (or be held back): only a device's silence is loss.
        stalled = (stream.source.is_device and stream.frames_seen
                   and now - stream.last_audio > STALL_S)
        if not stream.source.alive() or stalled:
            log.warning("input %s lost (%s); will retry", self.name,
                        "no audio" if stalled else "stream stopped")
            stream.source.stop()
            stream.abandon_taps(f"{self.name} was lost")
            self.set_state("lost")
