"""The control ops: one table (``Handlers.table``) of each op's request type and
handler; the request type (``vggvox.protocol.requests``) says its name, its fields
and the role it needs.

Each handler gets its request checked and typed and answers with a typed reply
(``vggvox.protocol.replies``). They run in the control thread, except the slow
part of ``enroll`` and ``name`` (embedding the audio, ``enrolling.py``), which runs
in the enrollment worker (``worker.py``) and answers when done, so that ``status``
and ``list`` stay quick meanwhile. They get what they use of the daemon
(``services.py``), never the daemon.
"""

from __future__ import annotations

from typing import Any

from vggvox.protocol.errors import NOT_FOUND
from vggvox.protocol.events import EnrollmentEvent
from vggvox.protocol.replies import (
    CalibrationReply,
    CalibrationResetReply,
    CancelReply,
    ListReply,
    ReloadReply,
    RemoveReply,
    SpeakerEntry,
    StatusReply,
)
from vggvox.protocol.requests import (
    CalibrationRequest,
    CalibrationResetRequest,
    CancelRequest,
    EnrollRequest,
    ListRequest,
    NameRequest,
    ReloadRequest,
    RemoveRequest,
    ReplayRequest,
    StatusRequest,
)
from vggvoxd.control import Later, Op, RequestError, ops_table
from vggvoxd.enrolling import Enrolling, Voices
from vggvoxd.replays import Replays
from vggvoxd.services import Services
from vggvoxd.status import Status
from vggvoxd.streamthread import Stream
from vggvoxd.worker import Worker


class Handlers:
    """The ops. The replay sessions and the enrollment worker are the daemon's (its
    run loop starts, reaps and stops them); the ops serve requests with them."""

    def __init__(self, services: Services, replays: Replays, worker: Worker) -> None:
        s = self.s = services
        self.replays, self.worker = replays, worker
        self.enrolling = Enrolling(
            store=s.store, embedder=s.embedder, settings=s.settings.enroll, vad=s.settings.vad,
            rooms=s.rooms, lives=s.lives, worker=self.worker, publish=s.publish,
            announce=self.announce, stopping=s.stopping, voices=self.voices)
        self._status = Status(s.health, s.lives, self.worker.guard, model=s.embedder.tag,
                              store=s.store.location, max_audio_s=s.settings.enroll.max_audio_s,
                              node=s.node)

    def table(self) -> dict[str, Op[Any]]:
        """Every control op: its request type and its handler."""
        e = self.enrolling
        return ops_table(
            Op(EnrollRequest, e.enroll), Op(NameRequest, e.name), Op(CancelRequest, self.cancel),
            Op(RemoveRequest, self.remove), Op(ListRequest, self.list),
            Op(StatusRequest, self.status), Op(ReloadRequest, self.reload),
            Op(ReplayRequest, self.replays.request), Op(CalibrationRequest, self.calibration),
            Op(CalibrationResetRequest, self.calibration_reset))

    def idle(self) -> bool:
        """No enrollment under way (recording, waiting or running)."""
        return self.worker.idle and not any(s.recording for s in self.streams())

    def streams(self) -> list[Stream]:
        return [*(live.stream for live in self.s.lives.all()), *self.replays.streams()]

    def voices(self) -> list[Voices]:
        """Every stream's unknown voices: live, replaying, and recently replayed."""
        found = [Voices(s.name, s.recognizer.unknowns, lambda s=s: s.stream_s)  # type: ignore[misc]
                 for s in self.streams() if s.recognizer.unknowns is not None]
        found += [Voices(k.source, k.unknowns, lambda k=k: k.stream_s)  # type: ignore[misc]
                  for k in self.replays.kept()]
        return found

    # -- the ops answered here ------------------------------------------------------------

    def cancel(self, req: CancelRequest, later: Later) -> CancelReply | None:
        """Cancel an enrollment by its ``request`` id (``cancellation.py``): answered at
        once, or through ``later`` when the enrollment's store write under way ends."""
        answer = self.enrolling.cancels.cancel(req.request, later)
        return None if answer is None else CancelReply.from_wire(answer)

    def remove(self, req: RemoveRequest, later: Later) -> RemoveReply:
        store = self.s.store
        if not store.remove(req.name):
            raise RequestError(f"no speaker named {req.name!r}", NOT_FOUND)
        self.announce("removed", req.name)
        # A reader holding an old snapshot delays the erasure of the vectors from the
        # store's files; the daemon's run loop retries it (store.retry_erasure).
        return RemoveReply(removed=req.name,
                           erasure="pending" if store.erasure_pending else "complete")

    def list(self, req: ListRequest, later: Later) -> ListReply:
        heard = self.s.heard()
        # As the executor's last load of the voiceprints found them (a list it swaps whole).
        store = self.s.store
        damaged = {row.speaker: f"row {row.row}: {row.problem}" for row in store.damaged}
        return ListReply(model=self.s.embedder.tag, speakers=[
            SpeakerEntry(name=s.name, embeddings=s.embeddings, seconds=round(s.seconds, 3),
                         model=s.model, updated=s.updated, last_heard=heard.get(s.name),
                         damaged=damaged.get(s.name))
            for s in store.speakers()])

    def status(self, req: StatusRequest, later: Later) -> StatusReply:
        unknowns = {v.source: v.unknowns.labels() for v in self.voices()}
        return self._status.reply(self.streams(), unknowns, len(self.replays))

    def reload(self, req: ReloadRequest, later: Later) -> ReloadReply:
        self.s.reload()
        return ReloadReply(speakers=self.s.speakers())

    def calibration(self, req: CalibrationRequest, later: Later) -> CalibrationReply:
        """Each source's room (or ``source``'s): its rule and what it rests on."""
        try:
            return CalibrationReply(sources=self.s.rooms.show(req.source))
        except ValueError as e:
            raise RequestError(str(e), NOT_FOUND) from None

    def calibration_reset(self, req: CalibrationResetRequest,
                          later: Later) -> CalibrationResetReply:
        """Back to the calibration as fitted for the sources (or ``source``): what they
        heard is forgotten and the clips enrolled on them so far are set aside."""
        rooms = self.s.rooms
        try:
            done = rooms.reset(req.source)
        except ValueError as e:
            raise RequestError(str(e), NOT_FOUND) from None
        return CalibrationResetReply(reset=done, sources=rooms.show(req.source))

    def announce(self, action: str, name: str, **counts: Any) -> None:
        """Publish an enrollment event, dated on the main source's clock, after the
        voiceprints are read again: the next decision would, but a source that is
        quiet makes none, and its room (``calibration``) must show the change now."""
        self.s.refresh()
        main = self.s.lives.main
        t = main.stream_s if main else 0.0
        self.s.publish(EnrollmentEvent(
            source=main.source.name if main else self.s.lives.spec, t_start=t, t_end=t,
            action=action, speaker=name, model=self.s.embedder.tag, **counts))
