r"""The supervisor: the runtime around the library's recognizer.

    mic source  -> Stream (ring buffer, segmenter) -\  live queue
    replay/file -> Stream (ring buffer, segmenter) --> finite queue -> EmbedExecutor
                                                        (embed, decide, wire) -> Publisher
    ControlServer (enroll, remove, list, status, reload, replay) -> VoiceprintStore
                                          VoiceprintSet (in memory) <- loaded from the store

The main thread runs ``run``: it (re)starts the live source with back-off when
it fails or disappears, sends heartbeats, tells systemd when it is ready, and
tears everything down on ``stop`` (SIGTERM).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from vggvox.embedder import Embedder
from vggvox.errors import ModelMismatchError
from vggvox.modelcard import ModelCard, load_card, resolve_card
from vggvox.store import ModelId, VoiceprintStore
from vggvox.stream.recognizer import Recognizer
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.access import share_sockets
from vggvoxd.config import Settings
from vggvoxd.control import ControlServer
from vggvoxd.curve import Curve
from vggvoxd.events import Event, StatusEvent
from vggvoxd.executor import EmbedExecutor, WorkQueues
from vggvoxd.handlers import Handlers
from vggvoxd.lock import EndpointLocks
from vggvoxd.notify import Notifier
from vggvoxd.publisher import Publisher
from vggvoxd.sources import AudioSource, FileSource, MicSource, SourceError, StdinSource
from vggvoxd.stream import Stream

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
# A running source that delivers nothing for this long is treated as lost.
STALL_S = 3.0


def check_source(spec: str) -> None:
    """A one-line ValueError for a bad --source, before anything is loaded."""
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


def make_source(spec: str, settings: Settings) -> AudioSource:
    """``mic``, ``file:PATH`` (played at real-time pace) or ``stdin``."""
    check_source(spec)
    if spec == "mic":
        return MicSource(settings.audio.device, settings.audio.block_ms)
    if spec == "stdin":
        return StdinSource(block_ms=settings.audio.block_ms)
    return FileSource(Path(spec[5:]), block_ms=settings.audio.block_ms)


class Daemon:
    def __init__(self, settings: Settings, source: str = "mic",
                 notifier: Notifier | None = None, allow_empty: bool = False) -> None:
        self.settings = settings
        self.source_spec = source
        self.notifier = notifier or Notifier()
        # One daemon per endpoint, checked first: a second one must not even load the
        # model or open the first one's store before it refuses.
        self.locks = EndpointLocks([settings.endpoint("events"), settings.endpoint("control")])
        self.locks.acquire()
        card = load_card(resolve_card(settings.model.name))
        self.embedder = Embedder(card, threads=settings.model.threads)
        self.store = VoiceprintStore(settings.store_path())
        self._check_store(card, allow_empty)
        self.voiceprints = VoiceprintSet(card.embedding_size, card.tag, settings.scoring.metric)
        self.rule = settings.scoring.rule(card, settings.scoring.metric)
        self.queues = WorkQueues(settings.window.queue, settings.window.queue)
        self.publisher = Publisher(settings.endpoint("events"), settings.endpoints.events_hwm,
                                   on_fatal=self.on_fatal)
        self.executor = EmbedExecutor(self.embedder, self.voiceprints, self.store, self.queues,
                                      settings.window.max_batch, self.publish, self.on_flush,
                                      self.on_fatal)
        self.handlers = Handlers(self)
        self.control = ControlServer(settings.endpoint("control"), self.handlers.table(),
                                     settings.endpoints.max_request_bytes, self.on_fatal)
        self.curve = Curve(settings.security)
        for sock in (self.publisher, self.control):
            sock.options.update(self.curve.socket_options())
        if self.curve.enabled:
            self.control.authorize = self.curve.allows
        self.main: Stream | None = None
        self.state = "starting"
        self.fatal: str | None = None
        """Why a stage gave up: the daemon then exits non-zero, to be restarted."""
        self._stop = threading.Event()
        self.stop_reason = ""
        self.reload_requested = threading.Event()
        """Set by SIGHUP; the run loop re-reads the voiceprints."""
        self._last_status = 0.0
        log.info("model %s (%s), %s, store %s", card.tag, card.path, self.rule.describe(),
                 self.store.path)

    def _check_store(self, card: ModelCard, allow_empty: bool) -> None:
        """A store of another model's voiceprints would leave everyone unknown, silently
        but for one log line: refuse to start, unless told to run with nobody enrolled."""
        try:
            self.store.voiceprints(ModelId.of(card))
        except ModelMismatchError as e:
            if not allow_empty:
                raise ModelMismatchError(f"{e} (--allow-empty starts with nobody enrolled)") \
                    from None
            log.error("%s; running with nobody enrolled (--allow-empty)", e)

    # -- events -------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        self.publisher.publish(event)

    def status_event(self, state: str | None = None) -> StatusEvent:
        main = self.main
        t = main.stream_s if main else 0.0
        return StatusEvent(
            source=main.source.name if main else self.source_spec,
            t_start=t, t_end=t, state=state or self.state,
            overflows=main.source.overflows if main else 0,
            dropped_samples=main.ring.dropped if main else 0,
            dropped_windows=main.dropped_windows if main else 0,
            queue=len(self.queues), speakers=len(self.voiceprints),
            dropped_events=self.publisher.dropped,
        )

    def stream(self, source: AudioSource, on_frames: Callable[[], None] | None = None,
               critical: bool = True) -> Stream:
        """A new stream with its own recognizer, fed to the shared executor. A critical
        stream (the microphone) that gives up stops the daemon; another (a client's
        replay) only ends itself."""
        recognizer = Recognizer(self.embedder, self.voiceprints, self.settings.recognizer())
        return Stream(source, recognizer, self.queues, self.settings.audio.buffer_s, on_frames,
                      self.on_fatal if critical else log.error)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.notifier.status(f"source {self.source_spec}: {state}")
            self.publish(self.status_event())

    def on_flush(self, stream: Stream) -> None:
        """The executor has handled every window of a finite stream."""
        self.handlers.replay_finished(stream)
        if stream is self.main:
            self.set_state("finished")

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self, reason: str = "") -> None:
        """Ask the run loop to stop (safe from a signal handler: no logging here)."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def reload(self) -> None:
        self.executor.refresh(force=True)
        self.curve.reload()

    def on_fatal(self, why: str) -> None:
        """A stage cannot go on (any thread): stop, and exit non-zero."""
        log.critical("%s; exiting so that the service manager restarts vggvoxd", why)
        self.fatal = why
        self._stop.set()

    def healthy(self) -> bool:
        """Every stage is alive, and making progress or idle by design."""
        return (self.executor.healthy() and self.publisher.alive() and self.control.alive()
                and not (self.main and self.main.guard.failed))

    def watchdog(self) -> None:
        """Called per captured block: ping systemd only while every stage is healthy,
        so that a stuck embedder gets the service restarted even as audio flows."""
        if self.healthy():
            self.notifier.watchdog()

    def run(self) -> int:
        """Serve until stopped: 0 on a clean stop, 1 when a stage gave up.

        The endpoints' locks were taken by ``__init__``."""
        self.curve.start()  # ZAP must answer before a CURVE socket takes a connection
        self.publisher.start()
        self.executor.start()
        self.handlers.worker.start()
        self.control.start()
        self.main = self.stream(make_source(self.source_spec, self.settings),
                                on_frames=self.watchdog)
        backoff, next_try = 1.0, 0.0
        try:
            share_sockets(self.settings)
            while not self._stop.is_set():
                now = time.monotonic()
                if self.state in ("starting", "waiting", "lost") and now >= next_try:
                    try:
                        self.main.start()
                        self.set_state("running")
                        backoff = 1.0
                    except SourceError as e:
                        log.warning("%s; waiting for one (next try in %.0f s)", e, backoff)
                        self.set_state("waiting" if self.state == "starting" else self.state)
                        next_try, backoff = now + backoff, min(2 * backoff, MAX_BACKOFF_S)
                elif self.state == "running":
                    self._watch_source(now)
                if self.state == "running" and self.main.frames_seen:
                    self.notifier.ready(f"listening on {self.main.source.name}")
                if now - self._last_status >= self.settings.status.interval_s:
                    self._last_status = now
                    self.publish(self.status_event())
                self.handlers.reap_replays()
                self.store.retry_erasure()  # a removal a reader held up; cheap when none
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    log.info("SIGHUP: reloading voiceprints")
                    self.reload()
                self._stop.wait(0.1)
        finally:
            self.shutdown()
        return 1 if self.fatal else 0

    def _watch_source(self, now: float) -> None:
        main = self.main
        assert main is not None
        if main.source.finished:
            return
        stalled = main.frames_seen and now - main.last_audio > STALL_S
        if not main.source.alive() or stalled:
            log.warning("input %s lost (%s); will retry", main.source.name,
                        "no audio" if stalled else "stream stopped")
            main.source.stop()
            main.abandon_taps(f"{main.source.name} was lost")
            self.set_state("lost")

    def shutdown(self) -> None:
        log.info("shutting down%s", f" ({self.stop_reason})" if self.stop_reason else "")
        self.notifier.stopping()
        self.control.stop()
        self.handlers.worker.stop()
        if self.main is not None:
            self.main.stop()
        self.handlers.stop_replays()
        self.executor.stop()
        self.publish(self.status_event(state="stopped"))
        self.publisher.stop()
        self.curve.stop()
        self.locks.release()
