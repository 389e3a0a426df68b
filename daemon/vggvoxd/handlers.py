"""The control requests: enroll, name, cancel, remove, list, status, reload, replay,
calibration, calibration_reset.

Each handler validates its fields (a RequestError names the bad one) and
answers with a plain map. They run in the control thread, except the slow part
of ``enroll`` and ``name`` (embedding the audio, ``enrolling.py``), which runs
in the enrollment worker (``worker.py``) and answers when done, so that
``status`` and ``list`` stay quick meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vggvox.protocol.events import EnrollmentEvent
from vggvoxd.cancellation import request_id
from vggvoxd.control import Handler, Later, Reply, RequestError, field
from vggvoxd.enrolling import Enrolling
from vggvoxd.replays import Replays
from vggvoxd.status import status_reply
from vggvoxd.streamthread import Stream
from vggvoxd.worker import Worker

if TYPE_CHECKING:
    from vggvoxd.daemon import Daemon


class Handlers:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.replays = Replays(daemon)
        self.worker = Worker(daemon.on_fatal)
        self.enrolling = Enrolling(self)

    def table(self) -> dict[str, Handler]:
        e = self.enrolling
        return {"enroll": e.enroll, "name": e.name, "cancel": self.cancel,
                "remove": self.remove, "list": self.list, "status": self.status,
                "reload": self.reload, "replay": self.replays.request,
                "calibration": self.calibration, "calibration_reset": self.calibration_reset}

    def idle(self) -> bool:
        """No enrollment under way (recording, waiting or running)."""
        return self.worker.idle and not any(s.recording for s in self.streams())

    def cancel(self, req: dict[str, Any], later: Later) -> Reply | None:
        """Cancel an enrollment by its ``request`` id (``requests.py``): answered at once,
        or through ``later`` when the enrollment's store write under way ends."""
        rid = request_id(req)
        if rid is None:
            raise RequestError("missing field 'request' (the id the enrollment was sent with)")
        return self.enrolling.requests.cancel(rid, later)

    def streams(self) -> list[Stream]:
        return [*(live.stream for live in self.d.lives), *self.replays.streams()]

    def unknowns(self) -> dict[str, dict[str, dict[str, object]]]:
        return {v.source: v.unknowns.labels() for v in self.enrolling.voices()}

    def remove(self, req: dict[str, Any], later: Later) -> Reply:
        name = field(req, "name", str)
        if not self.d.store.remove(name):
            raise RequestError(f"no speaker named {name!r}", "not_found")
        self.announce("removed", name)
        # A reader holding an old snapshot delays the erasure of the vectors from the
        # store's files; the daemon's run loop retries it (store.retry_erasure).
        return {"ok": True, "removed": name,
                "erasure": "pending" if self.d.store.erasure_pending else "complete"}

    def list(self, req: dict[str, Any], later: Later) -> Reply:
        heard = dict(self.d.executor.last_heard)  # the embedder thread's: a copy
        # As the executor's last load of the voiceprints found them (a list it swaps whole).
        damaged = {row.speaker: f"row {row.row}: {row.problem}" for row in self.d.store.damaged}
        return {"ok": True, "model": self.d.embedder.tag, "speakers": [
            {"name": s.name, "embeddings": s.embeddings, "seconds": round(s.seconds, 3),
             "model": s.model, "updated": s.updated, "last_heard": heard.get(s.name),
             "damaged": damaged.get(s.name)}
            for s in self.d.store.speakers()]}

    def status(self, req: dict[str, Any], later: Later) -> Reply:
        return status_reply(self.d, self.streams(), self.unknowns(), len(self.replays))

    def reload(self, req: dict[str, Any], later: Later) -> Reply:
        self.d.reload()
        return {"ok": True, "speakers": len(self.d.voiceprints)}

    def calibration(self, req: dict[str, Any], later: Later) -> Reply:
        """Each source's room (or ``source``'s): its rule and what it rests on."""
        try:
            return {"ok": True, "sources": self.d.rooms.show(field(req, "source", str, None))}
        except ValueError as e:
            raise RequestError(str(e), "not_found") from None

    def calibration_reset(self, req: dict[str, Any], later: Later) -> Reply:
        """Back to the calibration as fitted for the sources (or ``source``): what they
        heard is forgotten and the clips enrolled on them so far are set aside."""
        source = field(req, "source", str, None)
        try:
            done = self.d.rooms.reset(source)
        except ValueError as e:
            raise RequestError(str(e), "not_found") from None
        return {"ok": True, "reset": done, "sources": self.d.rooms.show(source)}

    def announce(self, action: str, name: str, **counts: Any) -> None:
        """Publish an enrollment event, dated on the main source's clock, after the
        voiceprints are read again: the next decision would, but a source that is
        quiet makes none, and its room (``calibration``) must show the change now."""
        self.d.executor.refresh()
        main = self.d.main
        t = main.stream_s if main else 0.0
        self.d.publish(EnrollmentEvent(
            source=main.source.name if main else self.d.source_spec, t_start=t, t_end=t,
            action=action, speaker=name, model=self.d.embedder.tag, **counts))
