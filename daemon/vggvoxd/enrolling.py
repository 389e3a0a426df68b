"""The enrollment requests: ``enroll`` (clips, or a live recording) and ``name`` (an
unknown voice a stream heard).

Each validates its fields in the control thread (a RequestError names the bad
one); the embedding and the store write run in the enrollment worker
(``worker.py``), whose reply goes back through the control socket's ``later``. A
live recording is a ``Tap`` on its stream, filled by the stream's thread. Every
enrollment is tracked (``requests.py``), so that its client can ``cancel`` it by
its ``request`` id: the store write is the one step a cancel cannot interrupt;
it runs inside ``Requests.commit`` (but outside its lock), and a cancel that
comes meanwhile is answered when it ends.

Unknown voices are looked for on the live streams, the replays under way, and
the replays that finished less than ``replays.KEEP_VOICES_S`` ago.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vggvox.admission import admit
from vggvox.audio import SAMPLE_RATE
from vggvox.enrollment import EnrollmentError, enroll
from vggvox.errors import StoreError
from vggvox.protocol.events import NamedEvent
from vggvox.protocol.pcm import from_pcm
from vggvox.store import check_name
from vggvox.stream.unknowns import UnknownClusters
from vggvoxd.cancellation import CancelledError, Requests, Tracked, request_id
from vggvoxd.control import Later, Reply, RequestError, field
from vggvoxd.streamthread import Stream, Tap

if TYPE_CHECKING:
    from vggvoxd.handlers import Handlers


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
    def __init__(self, handlers: Handlers) -> None:
        self.h = handlers
        self.d = handlers.d
        self.requests = Requests()

    # -- enroll ---------------------------------------------------------------------------

    def enroll(self, req: dict[str, Any], later: Later) -> Reply | None:
        name = check_name(field(req, "name", str))
        replace = field(req, "replace", bool, False)
        force = field(req, "force", bool, False)
        audio = field(req, "audio", list, None)
        live = field(req, "live", (int, float), None)
        rid = request_id(req)
        if (audio is None) == (live is None):
            raise RequestError("enroll needs exactly one of 'audio' (list of PCM) or 'live'")
        if audio is not None:
            if not audio:
                raise RequestError("'audio' is empty")
            clips = [from_pcm(a, f"audio[{i}]") for i, a in enumerate(audio)]
            total = sum(len(c) for c in clips) / SAMPLE_RATE
            most = self.d.settings.enroll.max_audio_s
            if total > most:
                raise RequestError(f"'audio' holds {total:.1f} s; at most {most:g} s per "
                                   "enrollment (enroll.max_audio_s)")
            # Clips declared as recorded on a source tell its room how strangers score
            # there (vggvox.roomstore); others are just clips.
            on = field(req, "source", str, None)
            if on is not None:
                try:
                    self.d.rooms.pick(on)
                except ValueError as e:
                    raise RequestError(f"'source': {e}") from None
            prefix = f"{on}:" if on is not None else ""
            sources = [f"{prefix}clip{i}" for i in range(len(clips))]
            t = self.requests.track(rid, f"enrollment of {name!r}")
            self._submit(t, lambda: self.enroll_clips(name, clips, replace, sources, t, force),
                         later)
            return None
        self._record(name, live, replace, force, field(req, "source", str, None), rid, later)
        return None

    def _record(self, name: str, live: float, replace: bool, force: bool,
                source: str | None, rid: str | None, later: Later) -> None:
        """A live enrollment: record ``live`` seconds from a source, then enroll them."""
        limit = self.d.settings.enroll.max_live_s
        if not live > 0:  # NaN too
            raise RequestError(f"'live' must be a positive number of seconds, got {live}")
        if live > limit:
            raise RequestError(f"'live' must be at most {limit:g} s (enroll.max_live_s), "
                               f"got {live:g}")
        main = self._live_stream(source)
        if main.recording:
            # One recording at a time per source: each holds up to max_live_s of audio.
            raise RequestError(f"busy: a live enrollment is already recording on {main.name}",
                               "busy")
        t = self.requests.track(rid, f"live enrollment of {name!r}", "recording")

        def recorded(x: np.ndarray) -> None:  # in the stream's thread
            try:
                self.requests.start(t, "queued")
            except CancelledError:
                return  # the cancel answered the request already
            try:
                # Tagged with the source: its room learns from the clip (roomstore.py).
                self._submit(t, lambda: self.enroll_clips(name, [x], replace,
                                                          [f"{main.name}:live"], t, force),
                             later)
            except RequestError as err:
                refused: Reply = {"ok": False, "error": str(err), "code": err.code}
                later(lambda: refused)

        def abandoned(why: str) -> None:  # the source stopped, ended or was lost
            error = f"live enrollment of {name!r} abandoned: {why}; nothing was stored"
            if self.requests.abandon(t, error):  # else a cancel answered already
                failed: Reply = {"ok": False, "error": error}
                later(lambda: failed)

        tap = Tap(int(live * SAMPLE_RATE), recorded, abandoned)

        def cancel() -> None:  # in the control thread, under the requests' lock
            tap.cancelled = True
            gone: Reply = {"ok": False, "code": "cancelled", "error": f"live enrollment of "
                           f"{name!r} cancelled (request {rid}): nothing was stored"}
            later(lambda: gone)

        t.on_cancel = cancel
        main.taps.append(tap)

    def _submit(self, t: Tracked, job: Callable[[], Reply], later: Later) -> None:
        """Run ``job`` in the enrollment worker, and remember how it ended."""
        def run() -> Reply:
            try:
                reply = job()
            except Exception as e:
                self.requests.end(t, {"ok": False, "error": str(e)})
                raise
            self.requests.end(t, reply)
            return reply

        try:
            self.h.worker.submit(run, later)
        except RequestError as e:
            self.requests.end(t, {"ok": False, "error": str(e)})
            raise

    def enroll_clips(self, name: str, clips: list[np.ndarray], replace: bool,
                     sources: list[str], t: Tracked, force: bool = False) -> Reply:
        """Embed, check (the library's ``admit``: same voice, no look-alike name, unless
        ``force``) and store, unless cancelled first (in the enrollment worker)."""
        embedder, settings = self.d.embedder, self.d.settings
        self.requests.start(t)  # a job cancelled while it waited ends here
        try:
            # Stopping is checked between clips, so that shutdown never has to leave
            # this thread in the middle of an ONNX call; a cancel, too.
            e = enroll(embedder, name, clips, sources, settings.vad,
                       settings.enroll.min_speech_s,
                       should_stop=lambda: self.d.stopping or t.cancelled)
        except EnrollmentError as err:
            if t.cancelled:
                raise CancelledError(f"{t.what} cancelled (request {t.id}): nothing was "
                                     "stored") from None
            if self.d.stopping:
                raise RequestError(f"vggvoxd is stopping: enrollment of {name!r} abandoned, "
                                   "nothing was stored") from None
            raise RequestError(str(err)) from None
        try:  # one row, not the whole list: only whether this name is enrolled
            existed = bool(self.d.store.speaker(name))
        except StoreError:
            existed = False
        # An existing name without replace gets these clips added to its voiceprint:
        # say so, since a user may have meant a new speaker or --replace.
        action = "replaced" if replace and existed else "appended" if existed else "added"
        with self.requests.commit(t):  # a cancel now is answered when the write ends
            info = admit(self.d.store, embedder.card, e, replace, force)
            t.result = {"action": action, "speaker": name}
        total = round(e.speech_s, 3)
        self._announce("added", name, embeddings=info.embeddings, speech_s=total)
        return {"ok": True, "speaker": name, "action": action, "embeddings": info.embeddings,
                "speech_s": total, "added": len(e.seconds), "speaker_s": round(info.seconds, 3),
                "model": embedder.tag}

    # -- name -----------------------------------------------------------------------------

    def name(self, req: dict[str, Any], later: Later) -> Reply | None:
        """Enroll an unknown-voice cluster's speech under a name (same checks as enroll)."""
        label = field(req, "unknown", str)
        name = check_name(field(req, "name", str))
        replace = field(req, "replace", bool, False)
        force = field(req, "force", bool, False)
        rid = request_id(req)
        voices = self._voices_with(label, field(req, "source", str, None))
        unknowns = voices.unknowns
        # Tracked before the voice is taken: a refused id (one still under way) must
        # leave the voice where it was.
        t = self.requests.track(rid, f"naming of {label!r} as {name!r}")
        # Take the voice, so that no turn joins it while it is being enrolled; it goes
        # back whenever the enrollment does not go through.
        cluster = unknowns.take(label)
        if cluster is None or not cluster.speech:
            if cluster is not None:
                unknowns.put_back(cluster)
            err = RequestError(f"{label!r} on {voices.source} has no speech kept yet")
            self.requests.end(t, {"ok": False, "error": str(err)})
            raise err

        def job() -> Reply:  # in the enrollment worker
            try:
                reply = self.enroll_clips(name, [np.concatenate(cluster.speech)], replace,
                                          [f"{voices.source}:{label}"], t, force)
            except Exception:  # refused, failed or cancelled: it stays an unknown voice
                unknowns.put_back(cluster)
                raise
            unknowns.name(label, name)
            now = voices.clock()
            self.d.publish(NamedEvent(source=voices.source, t_start=now, t_end=now,
                                      unknown=label, speaker=name, turns=list(cluster.turns)))
            return {**reply, "unknown": label, "source": voices.source,
                    "turns": list(cluster.turns)}

        try:
            self._submit(t, job, later)
        except RequestError:
            unknowns.put_back(cluster)
            raise
        return None

    def voices(self) -> list[Voices]:
        """Every stream's unknown voices: live, replaying, and recently replayed."""
        found = [Voices(s.name, s.recognizer.unknowns, lambda s=s: s.stream_s)  # type: ignore[misc]
                 for s in self.h.streams() if s.recognizer.unknowns is not None]
        found += [Voices(k.source, k.unknowns, lambda k=k: k.stream_s)  # type: ignore[misc]
                  for k in self.h.replays.kept()]
        return found

    def _voices_with(self, label: str, source: str | None) -> Voices:
        """The stream whose unknown voices include ``label`` (``source`` if given)."""
        have = self.voices()
        if source is not None and source not in {v.source for v in have}:
            raise RequestError(f"no stream {source!r} with unknown voices (streams: "
                               f"{', '.join(sorted(v.source for v in have)) or 'none'})",
                               "not_found")
        found = [v for v in have if (source is None or v.source == source)
                 and label in v.unknowns.labels()]
        if not found:
            where = f"on {source}" if source is not None else "on any stream"
            raise RequestError(f"no unknown voice {label!r} {where} (unknown voices now: "
                               f"{listing(have)})", "not_found")
        if len(found) > 1:
            raise RequestError(f"{label!r} is on several streams "
                               f"({', '.join(sorted(v.source for v in found))}): give 'source'")
        return found[0]

    # -- helpers ---------------------------------------------------------------------------

    def _live_stream(self, source: str | None) -> Stream:
        """The running live source to record from: ``source``, else the first one."""
        lives = self.d.lives
        live = self.d.live(source) if source is not None else (lives[0] if lives else None)
        if live is None:
            raise RequestError(f"no live source {source!r} (sources: "
                               f"{', '.join(lv.name for lv in lives) or 'none'})", "not_found")
        if live.state != "running" or live.stream.source.finished:
            raise RequestError(f"no live audio: the source {live.name} is {live.state}")
        return live.stream

    def _announce(self, action: str, name: str, **counts: Any) -> None:
        """Publish an enrollment event, dated on the main source's clock."""
        self.h.announce(action, name, **counts)
