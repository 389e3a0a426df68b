r"""The supervisor: the runtime around the library's recognizer.

    mic, file, stdin:live -> Stream (ring buffer, segmenter) -\  live queue
    stdin, replay --------> Stream (ring buffer, segmenter) --> finite queue -> EmbedExecutor
                                                             (embed, decide) -> Publisher
    ControlServer (enroll, name, cancel, remove, list, status, reload, replay, calibration,
                   calibration_reset) -> Handlers -> Store (SQLite file | PostgreSQL)
    StoreFollower (waits for changes) -> VoiceprintSet (in memory) <- loaded from the store

The main thread runs ``run``: it (re)starts each live source (``livesources.py``: one,
or several with ``sources:``) with back-off when it fails or disappears, sends
heartbeats, tells systemd when it is ready, and tears everything down on
``stop`` (SIGTERM). With ``--source file:PATH`` or ``--source stdin`` (a one-off
run) it stops by itself, with status 0, once that source has ended, its last
window is decided, and no replay or enrollment is under way. A ``sources:`` list
describes a service: it never ends by itself (its files and stdin end and stay
``finished``; it goes on serving replays, enrollments and requests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from vggvox.calibration import AcceptRule
from vggvox.embedder import Embedder
from vggvox.errors import StoreUnavailable
from vggvox.modelcard import ModelCard, load_card, resolve_card
from vggvox.protocol.events import Event
from vggvox.storebinding import ModelId
from vggvox.storeopen import open_store
from vggvox.stream.recognizer import Recognizer
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.access import share_sockets
from vggvoxd.calibration_overrides import Calibrations, describe
from vggvoxd.config import Settings
from vggvoxd.control import ControlServer
from vggvoxd.curveauth import Curve
from vggvoxd.executor import EmbedExecutor, WorkQueues
from vggvoxd.handlers import Handlers
from vggvoxd.health import Health
from vggvoxd.indexer import SearchIndexer
from vggvoxd.livesources import LiveSource, specs
from vggvoxd.lock import EndpointLocks
from vggvoxd.notify import Notifier, Watchdog
from vggvoxd.prometheus import MetricsServer
from vggvoxd.publisher import Publisher
from vggvoxd.replays import Replays
from vggvoxd.rooms import Rooms
from vggvoxd.satellite_server import satellites
from vggvoxd.services import HealthView, LiveView, Services
from vggvoxd.source_schemes import DEFAULT, make_source
from vggvoxd.sources import AudioSource
from vggvoxd.storefollow import StoreFollower
from vggvoxd.streamthread import Stream
from vggvoxd.worker import Worker

log = logging.getLogger(__name__)

class Daemon:
    def __init__(self, settings: Settings, source: str = DEFAULT,
                 notifier: Notifier | None = None, allow_empty: bool = False) -> None:
        self.settings = settings
        self.source_spec = source
        self.notifier = notifier or Notifier()
        self.health = Health(self)
        """Its state, status events, stages and metrics' readings (health.py)."""
        self.watchdog = Watchdog(self.notifier, self.health.healthy)
        """Per captured block, and from the run loop: pings while healthy (notify.py)."""
        # One daemon per endpoint, checked first: a second one must not even load the
        # model or open the first one's store before it refuses.
        self.locks = EndpointLocks([settings.endpoint("events"), settings.endpoint("control")])
        self.locks.acquire()
        card = load_card(resolve_card(settings.model.name))
        self.embedder = Embedder(card, threads=settings.model.threads)
        self.store = open_store(settings.store_location())
        # The index of a large set is built by its own thread, never on a decision.
        self.voiceprints = VoiceprintSet(card.embedding_size, card.tag, settings.scoring.metric,
                                         replace(settings.search, build_on_search=False))
        self.indexer = SearchIndexer(self.voiceprints, self.on_fatal)
        self.follower = StoreFollower(self.store, self.voiceprints, ModelId.of(card),
                                      self.on_load, self.on_fatal)
        self.follower.check_model(allow_empty)
        # A calibration the config names (fitted on the user's own recordings) replaces
        # the card's; loaded again here, with the model really run.
        self.calibrations = Calibrations.load(settings, card.name)
        self.rule = settings.scoring.rule(card, settings.scoring.metric,
                                          self.calibrations.default)
        names = [spec.name for spec in specs(settings, source)]
        self.rooms = Rooms(names, self.rule_for, settings.scoring.adapt, self.store, card)
        self._pipeline(card)
        self.handlers = self._ops(source)
        self.control = ControlServer(settings.endpoint("control"), self.handlers.table(),
                                     settings.endpoints.max_request_bytes, self.on_fatal)
        self.curve = self._curve()
        self.satellites = satellites(self, lambda live: self.health.status_event(live=live), names)
        """Remote microphones, each a live source while it is connected (satellites.py)."""
        self.lives: list[LiveSource] = []
        """The live sources, built by ``run``; owned by the run loop's thread."""
        self.fatal: str | None = None
        """Why a stage gave up: the daemon then exits non-zero, to be restarted."""
        self._stop = threading.Event()
        self.stop_reason = ""
        self.reload_requested = threading.Event()
        """Set by SIGHUP; the run loop re-reads the voiceprints."""
        self._last_status = 0.0
        log.info("model %s (%s), %s, store %s", card.tag, card.path, self.describe(self.rule),
                 self.store.location)
        for name, cal in self.calibrations.by_source.items():
            log.info("source %s: its own calibration %s", name, cal.path)

    def _pipeline(self, card: ModelCard) -> None:
        """The work queues, the executor that embeds and decides for every stream, the
        events publisher and (when ``metrics.listen`` is set) the metrics endpoint."""
        settings = self.settings
        self.queues = WorkQueues(settings.window.queue, settings.window.queue)
        self.publisher = Publisher(settings.endpoint("events"), settings.endpoints.events_hwm,
                                   on_fatal=self.on_fatal, node=settings.node_name)
        self.publish: Callable[[Event], None] = self.publisher.publish
        """The publish function (any thread), handed to whoever publishes: no hop here."""
        self.metrics = (MetricsServer(self.health.readings(card), settings.metrics, self.on_fatal)
                        if settings.metrics.listen else None)
        self.executor = EmbedExecutor(self.embedder, self.voiceprints, self.queues,
                                      settings.window.max_batch, self.on_fatal,
                                      on_decision=self.metrics.observe if self.metrics else None)

    def _ops(self, source: str) -> Handlers:
        """The replay sessions and the enrollment worker, which the run loop starts, reaps
        and stops, and the control ops, which serve requests with them."""
        settings = self.settings
        self.replays = Replays(lambda audio: self.stream(audio, critical=False), self.publish,
                               lambda: len(self.queues), lambda: len(self.voiceprints),
                               settings.unknowns.max_age_s)
        self.worker = Worker(self.on_fatal)
        return Handlers(Services(
            settings=settings, store=self.store, embedder=self.embedder, rooms=self.rooms,
            publish=self.publish,
            lives=LiveView(lambda: [*self.lives, *self.satellites.lives()], source),
            speakers=lambda: len(self.voiceprints),
            heard=lambda: dict(self.executor.last_heard), refresh=lambda: self.follower.refresh(),
            reload=self.reload, stopping=lambda: self.stopping,
            health=HealthView(self.health.status_event, self.describe, self.rule, self.executor,
                              self.indexer, lambda: (self.publisher, self.control,
                                                      *self.satellites.sockets()),
                              self.follower),
            node=settings.node_name),
            self.replays, self.worker)

    def _curve(self) -> Curve:
        """CURVE on both sockets when a server key is set (else nothing), and who may
        make which control request."""
        curve = Curve(self.settings.security)
        for sock in (self.publisher, self.control):
            sock.options.update(curve.socket_options())
        if curve.enabled:
            self.control.authorize = curve.allows
        return curve

    def describe(self, rule: AcceptRule) -> str:
        """A rule in words, naming its calibration file when it is not the card's."""
        return describe(rule, self.embedder.card.calibration)

    def rule_for(self, source: str) -> AcceptRule:
        """The rule a source decides with before its room moves it."""
        return self.settings.scoring.rule(self.embedder.card, self.settings.scoring.metric,
                                          self.calibrations.for_source(source))

    def on_load(self) -> None:
        """The voiceprints were (re)loaded: wake the index builder, and measure each
        room's enrollment clips again."""
        self.indexer.wake()
        self.rooms.enrollment_changed(self.voiceprints)

    def stream(self, source: AudioSource, on_frames: Callable[[], None] | None = None,
               critical: bool = True) -> Stream:
        """A new stream with its own recognizer, fed to the shared executor. A critical
        stream (the microphone) that gives up stops the daemon; another (a client's
        replay) only ends itself. A ``sources:`` entry's own calibration, else the
        daemon's, decides it (a replay's name, ``replay:...``, is never a source's)."""
        config = self.settings.recognizer(self.calibrations.for_source(source.name))
        recognizer = Recognizer(self.embedder, self.voiceprints, config,
                                room=self.rooms.get(source.name))
        return Stream(source, recognizer, self.queues, self.settings.audio.buffer_s,
                      self.publisher.publish, self.on_flush, on_frames,
                      self.on_fatal if critical else log.error)

    def on_state(self, live: LiveSource) -> None:
        """A live source changed state (in the run loop): tell systemd and subscribers."""
        self.notifier.status(f"source {live.name}: {live.state}")
        self.publish(self.health.status_event(live=live))

    def on_flush(self, stream: Stream) -> None:
        """The executor has handled every window of a finite stream (in its thread: the
        run loop turns a live source's flag into its state)."""
        self.replays.finished(stream)
        live = next((lv for lv in self.lives if lv.stream is stream), None)
        if live is not None:
            live.flushed.set()

    def all_done(self) -> bool:
        """A command line's file or stdin has ended, and nothing else is under way: no
        replay session, no enrollment, no reply still to send (a ``sources:`` list,
        or a microphone, never ends)."""
        return (not self.settings.sources and bool(self.lives)
                and all(lv.ended for lv in self.lives)
                and not len(self.replays) and self.handlers.idle()
                and self.control.idle())

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self, reason: str = "") -> None:
        """Ask the run loop to stop (safe from a signal handler: no logging here)."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def reload(self) -> None:
        self.follower.refresh(force=True)
        self.curve.reload()

    def on_fatal(self, why: str) -> None:
        """A stage cannot go on (any thread): stop, and exit non-zero."""
        log.critical("%s; exiting so that the service manager restarts vggvoxd", why)
        self.fatal = why
        self._stop.set()

    def run(self) -> int:
        """Serve until stopped: 0 on a clean stop, 1 when a stage gave up.

        The endpoints' locks were taken by ``__init__``."""
        # The sources exist (not yet started) before any socket answers: a status
        # request the moment control answers must already list them.
        self.lives = [LiveSource(self.stream(make_source(spec, self.settings.audio.block_ms),
                                             on_frames=self.watchdog), self.on_state)
                      for spec in specs(self.settings, self.source_spec)]
        if self.metrics is not None:
            try:
                self.metrics.start()
            except OSError as e:
                raise RuntimeError(f"metrics.listen {self.settings.metrics.listen}: "
                                   f"cannot listen there: {e.strerror or e}") from None
        self.curve.start()  # ZAP must answer before a CURVE socket takes a connection
        self.publisher.start()
        self.indexer.start()
        self.follower.start()  # the first load, then the thread that follows the store
        self.executor.start()
        self.worker.start()
        self.control.start()
        self.satellites.start()
        try:
            share_sockets(self.settings)
            while not self._stop.is_set():
                now = time.monotonic()
                for live in self.lives:
                    live.tick(now)
                self.satellites.tick(now)
                heard = [lv.name for lv in self.lives
                         if lv.state == "running" and lv.stream.frames_seen]
                if heard:
                    self.notifier.ready(f"listening on {', '.join(heard)}")
                if all(lv.may_be_quiet for lv in self.lives):
                    # Nothing that should be heard from is silent (a file that ended,
                    # a pipe that pauses): the pings cannot come from captured blocks.
                    self.watchdog()
                if now - self._last_status >= self.settings.status.interval_s:
                    self._last_status = now
                    for live in self.lives:
                        self.publish(self.health.status_event(live=live))
                self.replays.reap()
                if self.all_done():
                    log.info("the source has ended: stopping")
                    self.stop("end of input")
                self.keep_store()
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    log.info("SIGHUP: reloading voiceprints")
                    self.reload()
                self._stop.wait(0.1)
        finally:
            self.shutdown()
        return 1 if self.fatal else 0

    def keep_store(self) -> None:
        """The run loop's writes: a held-up erasure finished, the rooms saved. Not while
        the store is unreachable (the follower says so, once): nothing to do then."""
        if not self.follower.reachable:
            return
        try:
            self.store.retry_erasure()  # a removal a reader held up; cheap when none
        except StoreUnavailable:
            return  # the follower notices and says so
        self.rooms.save()

    def shutdown(self) -> None:
        log.info("shutting down%s", f" ({self.stop_reason})" if self.stop_reason else "")
        self.notifier.stopping()
        self.control.stop()
        self.worker.stop()
        for live in self.lives:
            live.stream.stop()
        self.replays.stop_all()
        self.satellites.stop()
        self.executor.stop()
        self.follower.stop()
        if self.follower.reachable:
            self.rooms.save(force=True)
        self.indexer.stop()
        now = time.monotonic()
        for live in self.lives:
            live.report_drops(now, final=True)
            self.publish(self.health.status_event(state="stopped", live=live))
        self.publisher.stop()
        self.curve.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.store.close()
        self.locks.release()
