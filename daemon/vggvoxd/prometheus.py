"""Prometheus metrics: an HTTP endpoint in the daemon, off by default.

    metrics:
      listen: 127.0.0.1:9464     # then: curl http://127.0.0.1:9464/metrics

Almost everything is read from the daemon's own counters when Prometheus
scrapes (``DaemonCollector.collect``, in a connection's thread, one scrape at a
time), so between scrapes it costs nothing. The collector sees the runtime only
through ``Readings``: a function for each thing it shows, not the daemon. Each
counter it reads has one writer (executor.py, streamthread.py) and is read in
one step. The one metric fed as events happen is the decision latency
histogram: one ``observe`` per window, in the executor thread.

A ``listen`` address off loopback is refused unless ``public: true`` says it
is meant: the endpoint has no authentication, and the systemd unit allows
only localhost (its ``IPAddressAllow=``) for the same reason.

The HTTP server is the daemon's own (``prometheus_http.py``): a few connections at
once, with time-outs, inside the daemon's budget of open files, so that a flood
of the port cannot reach the store or the ZeroMQ sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vggvox import __version__
from vggvoxd.config import MetricsSettings
from vggvoxd.guard import Guard
from vggvoxd.prometheus_http import MAX_CONNECTIONS, MetricsHTTP
from vggvoxd.streamthread import StreamCounts

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
"""Seconds from a window's last sample to its events being out."""


@dataclass(frozen=True)
class Readings:
    """What the metrics show of the runtime: the model, and a function for each reading,
    called at scrape time."""

    model: str
    sha256: str
    """The model's tag and its file's hash."""
    sources: Callable[[], list[tuple[str, str, StreamCounts]]]
    """Each live source's name, state and counters."""
    replays: Callable[[], tuple[int, int, int]]
    """Windows and turns decided, and samples dropped, by every replay since start."""
    embed_s: Callable[[], float]
    dropped_events: Callable[[], int]
    queued: Callable[[], int]
    speakers: Callable[[], int]
    guards: Callable[[], dict[str, Guard]]
    """Every stage's guard, by stage name."""
    store: Callable[[], dict[str, Any]] | None = None
    """The store follower's health (storefollow.py): reachable, generation, last_sync,
    outages, resyncs, backend."""


class DaemonCollector:
    """The daemon's state as Prometheus metric families, read at scrape time."""

    def __init__(self, readings: Readings) -> None:
        self.r = readings

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

        r = self.r
        yield InfoMetricFamily("vggvox_build", "Version, model and model file hash",
                               value={"version": __version__, "model": r.model,
                                      "sha256": r.sha256})
        sources = r.sources()
        yield from self.per_source(sources)
        state = GaugeMetricFamily("vggvox_source_state", "1 for the source's current state",
                                  labels=["source", "state"])
        for name, source_state, _ in sources:
            state.add_metric([name, source_state], 1)
        yield state
        yield CounterMetricFamily("vggvox_embed_seconds", "Time spent in the embedding "
                                  "network and its batching", value=r.embed_s())
        yield CounterMetricFamily("vggvox_dropped_events", "Events the publisher dropped",
                                  value=r.dropped_events())
        yield GaugeMetricFamily("vggvox_queue_depth", "Windows and items waiting for the "
                                "embedder", value=r.queued())
        yield GaugeMetricFamily("vggvox_enrolled_speakers", "Speakers in the voiceprint set",
                                value=r.speakers())
        failures = CounterMetricFamily("vggvox_stage_restarts", "Failures a stage recovered "
                                       "from (each is logged)", labels=["stage"])
        for stage, guard in r.guards().items():
            failures.add_metric([stage], guard.failures)
        yield failures
        if r.store is not None:
            yield from self.store(r.store())

    @staticmethod
    def store(h: dict[str, Any]) -> Iterator[Any]:
        """Whether the voiceprint store answers, and how the voiceprints followed it."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        backend = [str(h["backend"])]
        reachable = GaugeMetricFamily("vggvox_store_reachable", "1 while the voiceprint "
                                      "store answers; 0 while the daemon decides from memory",
                                      labels=["backend"])
        reachable.add_metric(backend, 1 if h["reachable"] else 0)
        yield reachable
        yield GaugeMetricFamily("vggvox_store_generation", "The store's generation the "
                                "voiceprints in memory were loaded at", value=h["generation"])
        if h["last_sync"] is not None:
            yield GaugeMetricFamily("vggvox_store_last_sync_timestamp_seconds", "When the "
                                    "voiceprints in memory were last found in step with the "
                                    "store (Unix time)", value=h["last_sync"])
        yield CounterMetricFamily("vggvox_store_outages", "Times the store became "
                                  "unreachable", value=h["outages"])
        yield CounterMetricFamily("vggvox_store_resyncs", "Reloads of the voiceprints after "
                                  "the store came back", value=h["resyncs"])
        yield CounterMetricFamily("vggvox_store_loads", "Loads of the voiceprints from the "
                                  "store", value=h["loads"])

    def per_source(self, sources: list[tuple[str, str, StreamCounts]]) -> Iterator[Any]:
        """The counters labelled by source: each live source's, and one series for all
        replays (their names are one-off tokens), counting the finished ones too, so
        that it never goes back."""
        from prometheus_client.core import CounterMetricFamily

        per_source = {name: counts for name, _, counts in sources}
        windows, turns, samples = self.r.replays()
        per_source["replay"] = StreamCounts(windows, turns, samples, 0, 0)
        families = {
            "windows": CounterMetricFamily("vggvox_windows_decided", "Windows embedded "
                                           "and decided", labels=["source"]),
            "turns": CounterMetricFamily("vggvox_turns_decided", "Turns closed with their "
                                         "answer", labels=["source"]),
            "dropped_samples": CounterMetricFamily("vggvox_dropped_samples", "Audio "
                                                   "samples overwritten in a ring buffer",
                                                   labels=["source"]),
            "dropped_windows": CounterMetricFamily("vggvox_dropped_windows", "Windows the "
                                                   "live queue dropped", labels=["source"]),
            "overflows": CounterMetricFamily("vggvox_input_overflows", "PortAudio input "
                                             "overflows", labels=["source"]),
        }
        for name, counts in per_source.items():
            for key, family in families.items():
                family.add_metric([name], getattr(counts, key))
        yield from families.values()


class MetricsServer:
    """The /metrics endpoint and the latency histogram; start() opens the port."""

    def __init__(self, readings: Readings, settings: MetricsSettings,
                 on_fatal: Callable[[str], None] = lambda why: None) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.settings = settings
        self.registry = CollectorRegistry()
        self.latency = Histogram("vggvox_decision_latency_seconds", "From a window's last "
                                 "sample entering its ring buffer to its events being out",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(DaemonCollector(readings))  # type: ignore[arg-type]
        self.http = MetricsHTTP(settings.address, self.render, on_fatal)
        """Its accept loop is a stage of the daemon (``guard``, ``healthy``)."""

    def observe(self, latency_s: float) -> None:
        self.latency.observe(latency_s)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric, read now (in a connection's thread)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def start(self) -> None:
        self.http.start()
        log.info("metrics on http://%s/metrics (at most %d connections at once)",
                 self.settings.listen, MAX_CONNECTIONS)

    def stop(self) -> None:
        self.http.stop()
