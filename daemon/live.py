"""The daemon's live sources, each under supervision.

A daemon listens to one source (``--source``: the microphone, a file, stdin) or
to several at once (``sources:`` in the config: the microphones of several
rooms). Each ``LiveSource`` owns one stream (ring buffer, VAD, windows, its own
recognizer) and its state:

    starting -> running -> lost -> running ...     (restarted with back-off)
             -> waiting (no device yet) -> running
    running  -> finished                          (a file or stdin that ended)

``tick`` is called from the supervisor's run loop (the main thread), which owns
every LiveSource; a source that fails never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from vggvoxd.config import Settings, SourceSpec
from vggvoxd.sources import AudioSource, FileSource, MicSource, SourceError, StdinSource
from vggvoxd.stream import Stream

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
STALL_S = 3.0
"""A running source that delivers nothing for this long is treated as lost."""


def check_source(spec: str) -> None:
    """A one-line ValueError for a bad --source (or a source's uri), before anything loads."""
    if spec not in ("mic", "stdin") and not (spec.startswith("file:") and len(spec) > 5):
        raise ValueError(f"--source must be mic, stdin or file:PATH, got {spec!r}")
    if spec.startswith("file:"):
        path = Path(spec[5:])
        if not path.is_file():
            raise ValueError(f"--source {spec}: file not found")
        try:
            sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise ValueError(f"--source {spec}: not readable as audio: {e}") from None


def specs(settings: Settings, source: str) -> list[SourceSpec]:
    """The sources to run: the config's ``sources:`` list, or else the one ``--source``
    names (``mic`` with ``audio.device``, ``stdin``, ``file:PATH``), under its old name."""
    if settings.sources:
        return list(settings.sources)
    if source == "mic":
        return [SourceSpec("mic", device=settings.audio.device)]
    name = "stdin" if source == "stdin" else source
    return [SourceSpec(name, uri=source)]


def check_specs(settings: Settings, source: str) -> None:
    """Every file a source plays exists and is audio: a ValueError naming it if not."""
    for spec in specs(settings, source):
        if spec.uri is not None:
            try:
                check_source(spec.uri)
            except ValueError as e:
                where = "--source" if not settings.sources else f"source {spec.name!r}"
                raise ValueError(str(e).replace("--source", where, 1)) from None


def make_source(spec: SourceSpec, block_ms: int) -> AudioSource:
    if spec.uri == "stdin":
        return StdinSource(block_ms=block_ms, name=spec.name)
    if spec.uri is not None:
        return FileSource(Path(spec.uri[5:]), block_ms=block_ms, name=spec.name)
    return MicSource(spec.device, block_ms, name=spec.name)


class LiveSource:
    """One live source: its stream, its state, and when to try starting it again."""

    def __init__(self, stream: Stream, on_state: Callable[[LiveSource], None]) -> None:
        self.stream = stream
        self.state = "starting"
        self.on_state = on_state
        """Called (in the run loop) after each change of state."""
        self._backoff = 1.0
        self._next_try = 0.0

    @property
    def name(self) -> str:
        return self.stream.name

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(self)

    def tick(self, now: float) -> None:
        """Start (or restart) the source when due; notice when a running one is lost."""
        if self.state in ("starting", "waiting", "lost") and now >= self._next_try:
            try:
                self.stream.start()
                self.set_state("running")
                self._backoff = 1.0
            except SourceError as e:
                log.warning("%s: %s; waiting for one (next try in %.0f s)", self.name, e,
                            self._backoff)
                self.set_state("waiting" if self.state == "starting" else self.state)
                self._next_try = now + self._backoff
                self._backoff = min(2 * self._backoff, MAX_BACKOFF_S)
        elif self.state == "running":
            self._watch(now)

    def _watch(self, now: float) -> None:
        stream = self.stream
        if stream.source.finished:
            return
        stalled = stream.frames_seen and now - stream.last_audio > STALL_S
        if not stream.source.alive() or stalled:
            log.warning("input %s lost (%s); will retry", self.name,
                        "no audio" if stalled else "stream stopped")
            stream.source.stop()
            stream.abandon_taps(f"{self.name} was lost")
            self.set_state("lost")
