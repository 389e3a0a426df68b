"""What the daemon says of its own health: its state and status events, its stages
(threads) each under its guard, whether it is healthy, and what the metrics read.

Who asks: the watchdog (notify.py) pings systemd only while ``healthy()``; the run
loop publishes ``status_event``s, and the ``status`` op shows them (status.py,
through a ``HealthView``); Prometheus scrapes ``readings`` (prometheus.py). It reads
the daemon's parts named in ``Parts``, each when asked: the live sources are only
built by ``run``, and the metrics' readings exist before most stages do.
"""

from __future__ import annotations

from typing import Protocol

from vggvox.modelcard import ModelCard
from vggvox.protocol.events import StatusEvent
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.control import ControlServer
from vggvoxd.curveauth import Curve
from vggvoxd.executor import EmbedExecutor, WorkQueues
from vggvoxd.guard import Guard, Stage
from vggvoxd.indexer import SearchIndexer
from vggvoxd.livesources import LiveSource
from vggvoxd.prometheus import MetricsServer, Readings
from vggvoxd.publisher import Publisher
from vggvoxd.replays import Replays
from vggvoxd.satellites import Satellites
from vggvoxd.storefollow import StoreFollower
from vggvoxd.worker import Worker


class Parts(Protocol):
    """The parts of the daemon (daemon.py) its health is read from."""

    source_spec: str
    lives: list[LiveSource]
    queues: WorkQueues
    voiceprints: VoiceprintSet
    executor: EmbedExecutor
    indexer: SearchIndexer
    follower: StoreFollower
    publisher: Publisher
    control: ControlServer
    worker: Worker
    replays: Replays
    curve: Curve
    metrics: MetricsServer | None
    satellites: Satellites


class Health:
    def __init__(self, parts: Parts) -> None:
        self.d = parts

    @property
    def state(self) -> str:
        """The daemon's state: its source's, or with several ``running`` while any runs."""
        states = [live.state for live in self.d.lives] or ["starting"]
        return "running" if "running" in states else states[0]

    def status_event(self, state: str | None = None,
                     live: LiveSource | None = None) -> StatusEvent:
        """One live source's status, or (no ``live``) all of them summed up."""
        d = self.d
        lives = [live] if live is not None else d.lives
        streams = [lv.stream for lv in lives]
        t = streams[0].stream_s if streams else 0.0
        return StatusEvent(
            source=",".join(lv.name for lv in lives) or d.source_spec,
            t_start=t, t_end=t,
            state=state or (live.state if live is not None else self.state),
            overflows=sum(s.source.overflows for s in streams),
            dropped_samples=sum(s.ring.dropped for s in streams),
            dropped_windows=sum(s.dropped_windows for s in streams),
            queue=len(d.queues), speakers=len(d.voiceprints),
            dropped_events=d.publisher.dropped,
        )

    def stages(self) -> dict[str, Stage]:
        """The daemon's own threads by stage name, each under its guard; every one makes
        ``healthy()``. A replay's stream is none: giving up, it ends only itself."""
        d = self.d
        stages: dict[str, Stage] = {
            "embedder": d.executor, "search": d.indexer, "store": d.follower,
            "events": d.publisher,
            "control": d.control, "enroll-worker": d.worker,
            **{live.name: live.stream for live in d.lives}}
        if d.metrics is not None:
            stages["metrics"] = d.metrics.http
        for server in d.satellites.sockets():  # a satellite's stream is none, as a replay's
            stages[server.name] = server
        return stages

    def guards(self) -> dict[str, Guard]:
        """Every stage's guard by stage name, replays' streams' too (for metrics)."""
        return {**{name: stage.guard for name, stage in self.stages().items()},
                **{s.name: s.guard for s in self.d.replays.streams()},
                **{lv.name: lv.stream.guard for lv in self.d.satellites.lives()}}

    def healthy(self) -> bool:
        """Every stage is alive, and making progress or idle by design, and so is the
        CURVE authenticator (pyzmq's thread): a stuck embedder stops the watchdog's
        pings even as audio flows, and the service is restarted."""
        return (all(stage.healthy() for stage in self.stages().values())
                and self.d.curve.alive())

    def readings(self, card: ModelCard) -> Readings:
        """What the metrics show, each read when Prometheus scrapes."""
        d = self.d
        return Readings(
            card.tag, card.sha256,
            sources=lambda: [(lv.name, lv.state, lv.stream.counts())
                             for lv in [*d.lives, *d.satellites.lives()]],
            replays=lambda: d.replays.totals(),
            embed_s=lambda: d.executor.compute_s, dropped_events=lambda: d.publisher.dropped,
            queued=lambda: len(d.queues), speakers=lambda: len(d.voiceprints),
            guards=self.guards, store=d.follower.health)
