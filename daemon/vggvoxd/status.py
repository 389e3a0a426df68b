"""The ``status`` reply: the daemon's state, counters and every stage's health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vggvoxd.daemon import Daemon
    from vggvoxd.livesources import LiveSource
    from vggvoxd.streamthread import Stream


def status_reply(d: Daemon, streams: list[Stream], unknowns: dict[str, Any],
                 replays: int) -> dict[str, Any]:
    """What ``vggvox-client status`` shows (docs/control.md); with several sources the
    counters are summed and ``sources`` has each one's."""
    ev = d.status_event()
    return {"ok": True, "source": ev.source, "state": ev.state, "stream_s": ev.t_end,
            "overflows": ev.overflows, "dropped_samples": ev.dropped_samples,
            "dropped_windows": ev.dropped_windows, "dropped_events": ev.dropped_events,
            "queue": ev.queue,
            "speakers": ev.speakers, "windows": d.executor.windows_done,
            "embed_s": round(d.executor.compute_s, 3),
            "model": d.embedder.tag, "scoring": d.describe(d.rule),
            "store": str(d.store.path),
            # What a client may send before it reads a file whole (the web page's uploads).
            "enroll_max_audio_s": d.settings.enroll.max_audio_s,
            "unknowns": unknowns, "replays": replays,
            "sources": {live.name: source_status(d, live) for live in d.lives},
            "connections": {s.name: s.connections.health()
                            for s in (d.publisher, d.control)},
            "stages": {"embedder": d.executor.health(),
                       "search": d.indexer.health(),
                       "events": d.publisher.guard.health(),
                       "control": d.control.guard.health(),
                       "enroll-worker": d.handlers.worker.guard.health(),
                       **{s.name: stream_stage(d, s) for s in streams}}}


def stream_stage(d: Daemon, stream: Stream) -> dict[str, object]:
    """A stream's stage health; a live source that is not running (waiting for its
    device, lost, finished) says so, not "ok": its thread may be fine, but no audio
    goes through it."""
    health = stream.guard.health()
    live = next((lv for lv in d.lives if lv.stream is stream), None)
    if live is not None and live.state != "running" and health["state"] == "ok":
        health = {**health, "state": live.state}
    return health


def source_status(d: Daemon, live: LiveSource) -> dict[str, object]:
    ev = d.status_event(live=live)
    return {"state": ev.state, "stream_s": ev.t_end, "overflows": ev.overflows,
            "dropped_samples": ev.dropped_samples, "dropped_windows": ev.dropped_windows,
            "scoring": d.describe(live.stream.recognizer.rule),
            "room": live.stream.recognizer.room.summary()}
