"""The enrollment requests: ``enroll`` (clips, or a live recording) and ``name`` (an
unknown voice a stream heard).

Each gets its request checked and typed (``vggvox.protocol.requests``) and checks,
in the control thread, what only the daemon knows (its limits, sources and voices;
a RequestError names the bad field); the embedding and the store write run in the
enrollment worker (``worker.py``), whose reply goes back through the control
socket's ``later``. A live recording is a ``Tap`` on its stream, filled by the
stream's thread. Every enrollment is tracked (``cancellation.py``), so that its
client can ``cancel`` it by its ``request`` id: the store write is the one step a
cancel cannot interrupt; it runs inside ``Cancellations.commit`` (but outside its lock),
and a cancel that comes meanwhile is answered when it ends.

Unknown voices are looked for on the live streams, the replays under way, and
the replays that finished less than ``replays.KEEP_VOICES_S`` ago.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from vggvox.admission import admit
from vggvox.audio import SAMPLE_RATE
from vggvox.embedder import Embedder
from vggvox.enrollment import EnrollmentError, enroll
from vggvox.errors import StoreError
from vggvox.protocol.errors import BUSY, CANCELLED, NOT_FOUND, error_reply
from vggvox.protocol.events import Event, NamedEvent
from vggvox.protocol.message import Wire
from vggvox.protocol.pcm import from_pcm
from vggvox.protocol.replies import EnrollReply, NameReply
from vggvox.protocol.requests import EnrollRequest, NameRequest
from vggvox.settings import EnrollSettings
from vggvox.store import check_name
from vggvox.storeapi import Store
from vggvox.stream.unknowns import UnknownClusters
from vggvox.stream.vad import VadConfig
from vggvoxd.cancellation import Cancellations, CancelledError, Tracked
from vggvoxd.control import Later, RequestError
from vggvoxd.rooms import Rooms
from vggvoxd.services import LiveView
from vggvoxd.streamthread import Stream, Tap
from vggvoxd.worker import Worker


@dataclass(frozen=True)
class Voices:
    """A stream's unknown voices: a running stream's, or a finished replay's."""

    source: str
    unknowns: UnknownClusters
    clock: Callable[[], float]
    """The stream's clock now (seconds), to date a ``named`` event."""


def label_order(label: str) -> tuple[int, str]:
    """unknown-2 before unknown-10."""
    m = re.search(r"(\d+)$", label)
    return (int(m.group(1)) if m else 0, label)


def listing(voices: list[Voices]) -> str:
    """Each stream's unknown voices in words: ``mic: none; replay:x-1a2b: unknown-2``."""
    return "; ".join(f"{v.source}: " + (", ".join(sorted(v.unknowns.labels(), key=label_order))
                                        or "none") for v in voices) or "no streams"


class Enrolling:
    """The ``enroll`` and ``name`` ops, and the enrollments under way (``cancels``)."""

    def __init__(self, *, store: Store, embedder: Embedder, settings: EnrollSettings,
                 vad: VadConfig, rooms: Rooms, lives: LiveView, worker: Worker,
                 publish: Callable[[Event], None], announce: Callable[..., None],
                 stopping: Callable[[], bool], voices: Callable[[], list[Voices]]) -> None:
        self.store, self.embedder, self.settings, self.vad = store, embedder, settings, vad
        self.rooms, self.lives, self.worker = rooms, lives, worker
        self.publish, self.announce, self.stopping = publish, announce, stopping
        self.voices = voices
        """Every stream's unknown voices: live, replaying, and recently replayed."""
        self.cancels = Cancellations()

    # -- enroll ---------------------------------------------------------------------------

    def enroll(self, req: EnrollRequest, later: Later) -> None:
        name = check_name(req.name)
        if req.audio is None:
            assert req.live is not None  # EnrollRequest.from_wire: one of the two
            self._record(name, req.live, req, later)
            return
        clips = [from_pcm(a, f"audio[{i}]") for i, a in enumerate(req.audio)]
        total = sum(len(c) for c in clips) / SAMPLE_RATE
        most = self.settings.max_audio_s
        if total > most:
            raise RequestError(f"'audio' holds {total:.1f} s; at most {most:g} s per "
                               "enrollment (enroll.max_audio_s)")
        # Clips declared as recorded on a source tell its room how strangers score
        # there (vggvox.roomstore); others are just clips.
        on = req.source
        if on is not None:
            try:
                self.rooms.pick(on)
            except ValueError as e:
                raise RequestError(f"'source': {e}") from None
        prefix = f"{on}:" if on is not None else ""
        sources = [f"{prefix}clip{i}" for i in range(len(clips))]
        t = self.cancels.track(req.request, f"enrollment of {name!r}")
        self._submit(t, lambda: self.enroll_clips(name, clips, req.replace, sources, t,
                                                  req.force).to_wire(), later)

    def _record(self, name: str, live: float, req: EnrollRequest, later: Later) -> None:
        """A live enrollment: record ``live`` seconds from a source, then enroll them."""
        limit = self.settings.max_live_s
        if not live > 0:  # NaN too
            raise RequestError(f"'live' must be a positive number of seconds, got {live}")
        if live > limit:
            raise RequestError(f"'live' must be at most {limit:g} s (enroll.max_live_s), "
                               f"got {live:g}")
        main = self._live_stream(req.source)
        if main.recording:
            # One recording at a time per source: each holds up to max_live_s of audio.
            raise RequestError(f"busy: a live enrollment is already recording on {main.name}",
                               BUSY)
        t = self.cancels.track(req.request, f"live enrollment of {name!r}", "recording")

        def recorded(x: np.ndarray) -> None:  # in the stream's thread
            try:
                self.cancels.start(t, "queued")
            except CancelledError:
                return  # the cancel answered the request already
            try:
                # Tagged with the source: its room learns from the clip (roomstore.py).
                self._submit(t, lambda: self.enroll_clips(
                    name, [x], req.replace, [f"{main.name}:live"], t, req.force).to_wire(),
                    later)
            except RequestError as err:
                refused = error_reply(str(err), err.code)
                later(lambda: refused)

        def abandoned(why: str) -> None:  # the source stopped, ended or was lost
            error = f"live enrollment of {name!r} abandoned: {why}; nothing was stored"
            if self.cancels.abandon(t, error):  # else a cancel answered already
                failed: Wire = {"ok": False, "error": error}
                later(lambda: failed)

        tap = Tap(int(live * SAMPLE_RATE), recorded, abandoned)

        def cancel() -> None:  # in the control thread, under the cancels' lock
            tap.cancelled = True
            gone: Wire = {"ok": False, "code": CANCELLED, "error": f"live enrollment of "
                          f"{name!r} cancelled (request {req.request}): nothing was stored"}
            later(lambda: gone)

        t.on_cancel = cancel
        main.taps.append(tap)

    def _submit(self, t: Tracked, job: Callable[[], Wire], later: Later) -> None:
        """Run ``job`` in the enrollment worker, and remember how it ended."""
        def run() -> Wire:
            try:
                reply = job()
            except Exception as e:
                self.cancels.end(t, {"ok": False, "error": str(e)})
                raise
            self.cancels.end(t, reply)
            return reply

        try:
            self.worker.submit(run, later)
        except RequestError as e:
            self.cancels.end(t, {"ok": False, "error": str(e)})
            raise

    def enroll_clips(self, name: str, clips: list[np.ndarray], replace: bool,
                     sources: list[str], t: Tracked, force: bool = False) -> EnrollReply:
        """Embed, check (the library's ``admit``: same voice, no look-alike name, unless
        ``force``) and store, unless cancelled first (in the enrollment worker)."""
        embedder = self.embedder
        self.cancels.start(t)  # a job cancelled while it waited ends here
        try:
            # Stopping is checked between clips, so that shutdown never has to leave
            # this thread in the middle of an ONNX call; a cancel, too.
            e = enroll(embedder, name, clips, sources, self.vad, self.settings.min_speech_s,
                       should_stop=lambda: self.stopping() or t.cancelled)
        except EnrollmentError as err:
            if t.cancelled:
                raise CancelledError(f"{t.what} cancelled (request {t.id}): nothing was "
                                     "stored") from None
            if self.stopping():
                raise RequestError(f"vggvoxd is stopping: enrollment of {name!r} abandoned, "
                                   "nothing was stored") from None
            raise RequestError(str(err)) from None
        try:  # one row, not the whole list: only whether this name is enrolled
            existed = bool(self.store.speaker(name))
        except StoreError:
            existed = False
        # An existing name without replace gets these clips added to its voiceprint:
        # say so, since a user may have meant a new speaker or --replace.
        action = "replaced" if replace and existed else "appended" if existed else "added"
        with self.cancels.commit(t):  # a cancel now is answered when the write ends
            info = admit(self.store, embedder.card, e, replace, force)
            t.result = {"action": action, "speaker": name}
        total = round(e.speech_s, 3)
        self.announce("added", name, embeddings=info.embeddings, speech_s=total)
        return EnrollReply(speaker=name, action=action, embeddings=info.embeddings,
                           speech_s=total, added=len(e.seconds),
                           speaker_s=round(info.seconds, 3), model=embedder.tag)

    # -- name -----------------------------------------------------------------------------

    def name(self, req: NameRequest, later: Later) -> None:
        """Enroll an unknown-voice cluster's speech under a name (same checks as enroll)."""
        label = req.unknown
        name = check_name(req.name)
        voices = self._voices_with(label, req.source)
        unknowns = voices.unknowns
        # Tracked before the voice is taken: a refused id (one still under way) must
        # leave the voice where it was.
        t = self.cancels.track(req.request, f"naming of {label!r} as {name!r}")
        # Take the voice, so that no turn joins it while it is being enrolled; it goes
        # back whenever the enrollment does not go through.
        cluster = unknowns.take(label)
        if cluster is None or not cluster.speech:
            if cluster is not None:
                unknowns.put_back(cluster)
            err = RequestError(f"{label!r} on {voices.source} has no speech kept yet")
            self.cancels.end(t, {"ok": False, "error": str(err)})
            raise err

        def job() -> Wire:  # in the enrollment worker
            try:
                reply = self.enroll_clips(name, [np.concatenate(cluster.speech)], req.replace,
                                          [f"{voices.source}:{label}"], t, req.force)
            except Exception:  # refused, failed or cancelled: it stays an unknown voice
                unknowns.put_back(cluster)
                raise
            unknowns.name(label, name)
            now = voices.clock()
            self.publish(NamedEvent(source=voices.source, t_start=now, t_end=now,
                                    unknown=label, speaker=name, turns=list(cluster.turns)))
            return NameReply(**asdict(reply), unknown=label, source=voices.source,
                             turns=list(cluster.turns)).to_wire()

        try:
            self._submit(t, job, later)
        except RequestError:
            unknowns.put_back(cluster)
            raise

    def _voices_with(self, label: str, source: str | None) -> Voices:
        """The stream whose unknown voices include ``label`` (``source`` if given)."""
        have = self.voices()
        if source is not None and source not in {v.source for v in have}:
            raise RequestError(f"no stream {source!r} with unknown voices (streams: "
                               f"{', '.join(sorted(v.source for v in have)) or 'none'})",
                               NOT_FOUND)
        found = [v for v in have if (source is None or v.source == source)
                 and label in v.unknowns.labels()]
        if not found:
            where = f"on {source}" if source is not None else "on any stream"
            raise RequestError(f"no unknown voice {label!r} {where} (unknown voices now: "
                               f"{listing(have)})", NOT_FOUND)
        if len(found) > 1:
            raise RequestError(f"{label!r} is on several streams "
                               f"({', '.join(sorted(v.source for v in found))}): give 'source'")
        return found[0]

    def _live_stream(self, source: str | None) -> Stream:
        """The running live source to record from: ``source``, else the first one."""
        lives = self.lives.all()
        live = self.lives.named(source) if source is not None else (lives[0] if lives else None)
        if live is None:
            raise RequestError(f"no live source {source!r} (sources: "
                               f"{', '.join(lv.name for lv in lives) or 'none'})", NOT_FOUND)
        if live.state != "running" or live.stream.source.finished:
            raise RequestError(f"no live audio: the source {live.name} is {live.state}")
        return live.stream
