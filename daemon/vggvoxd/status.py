"""The ``status`` reply: the daemon's state, counters and every stage's health.

It reads the stages through a ``HealthView`` and the live sources through a
``LiveView`` (services.py), never the daemon itself.
"""

from __future__ import annotations

from typing import Any

from vggvox.protocol.replies import StatusReply
from vggvoxd.livesources import LiveSource
from vggvoxd.services import HealthView, LiveView, Stage
from vggvoxd.streamthread import Stream


class Status:
    """What ``vggvox-client status`` shows (docs/control.md); with several sources the
    counters are summed and ``sources`` has each one's."""

    def __init__(self, view: HealthView, lives: LiveView, worker: Stage, *, model: str,
                 store: str, max_audio_s: float, node: str = "") -> None:
        self.view, self.lives, self.worker = view, lives, worker
        self.model, self.store, self.max_audio_s = model, store, max_audio_s
        self.node = node

    def reply(self, streams: list[Stream], unknowns: dict[str, Any],
              replays: int) -> StatusReply:
        view = self.view
        ev = view.summary()
        sockets = view.sockets()
        return StatusReply(
            source=ev.source, state=ev.state, stream_s=ev.t_end, overflows=ev.overflows,
            dropped_samples=ev.dropped_samples, dropped_windows=ev.dropped_windows,
            dropped_events=ev.dropped_events, queue=ev.queue, speakers=ev.speakers,
            windows=view.embedder.windows_done, embed_s=round(view.embedder.compute_s, 3),
            model=self.model, scoring=view.describe(view.rule), store=self.store,
            # What a client may send before it reads a file whole (the web page's uploads).
            enroll_max_audio_s=self.max_audio_s, unknowns=unknowns, replays=replays,
            sources={live.name: self.source(live) for live in self.lives.all()},
            connections={s.name: s.connections.health() for s in sockets},
            stages={"embedder": view.embedder.health(), "search": view.search.health(),
                    "store": view.store.health(),
                    **{s.name: s.guard.health() for s in sockets},
                    "enroll-worker": self.worker.health(),
                    **{s.name: self.stream_stage(s) for s in streams}},
            node=self.node)

    def stream_stage(self, stream: Stream) -> dict[str, object]:
        """A stream's stage health; a live source that is not running (waiting for its
        device, lost, finished) says so, not "ok": its thread may be fine, but no audio
        goes through it."""
        health = stream.guard.health()
        live = next((lv for lv in self.lives.all() if lv.stream is stream), None)
        if live is not None and live.state != "running" and health["state"] == "ok":
            health = {**health, "state": live.state}
        return health

    def source(self, live: LiveSource) -> dict[str, object]:
        ev = self.view.summary(live=live)
        recognizer = live.stream.recognizer
        return {"state": ev.state, "stream_s": ev.t_end, "overflows": ev.overflows,
                "dropped_samples": ev.dropped_samples, "dropped_windows": ev.dropped_windows,
                "scoring": self.view.describe(recognizer.rule),
                "room": recognizer.room.summary(), **live.details()}
