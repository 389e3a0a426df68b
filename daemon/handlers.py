"""The control requests: enroll, name, remove, list, status, reload, replay.

Each handler validates its fields (a RequestError names the bad one) and
answers with a plain map. They run in the control thread, except the slow part
of ``enroll`` and ``name`` (embedding the audio), which runs in the enrollment
worker (``worker.py``) and answers when done, so that ``status`` and ``list``
stay quick meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.enrollment import EnrollmentError, enroll
from vggvox.errors import StoreError
from vggvox.identity import admit
from vggvox.store import check_name
from vggvoxd.control import Handler, Later, Reply, RequestError, field
from vggvoxd.events import EnrollmentEvent, NamedEvent
from vggvoxd.replays import Replays, pcm
from vggvoxd.status import status_reply
from vggvoxd.stream import Stream, Tap
from vggvoxd.worker import Worker

if TYPE_CHECKING:
    from vggvoxd.daemon import Daemon

class Handlers:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.replays = Replays(daemon)
        self.worker = Worker()

    def table(self) -> dict[str, Handler]:
        return {"enroll": self.enroll, "name": self.name, "remove": self.remove,
                "list": self.list, "status": self.status, "reload": self.reload,
                "replay": self.replays.request}

    # -- enrollment -----------------------------------------------------------------------

    def enroll(self, req: dict[str, Any], later: Later) -> Reply | None:
        name = check_name(field(req, "name", str))
        replace = field(req, "replace", bool, False)
        force = field(req, "force", bool, False)
        audio = field(req, "audio", list, None)
        live = field(req, "live", (int, float), None)
        if (audio is None) == (live is None):
            raise RequestError("enroll needs exactly one of 'audio' (list of PCM) or 'live'")
        if audio is not None:
            if not audio:
                raise RequestError("'audio' is empty")
            clips = [pcm(a, f"audio[{i}]") for i, a in enumerate(audio)]
            total = sum(len(c) for c in clips) / SAMPLE_RATE
            most = self.d.settings.enroll.max_audio_s
            if total > most:
                raise RequestError(f"'audio' holds {total:.1f} s; at most {most:g} s per "
                                   "enrollment (enroll.max_audio_s)")
            sources = [f"clip{i}" for i in range(len(clips))]
            self.worker.submit(lambda: self.enroll_clips(name, clips, replace, sources, force),
                               later)
            return None
        limit = self.d.settings.enroll.max_live_s
        if not 0 < live <= limit:
            raise RequestError(f"'live' must be in (0, {limit}] seconds, got {live}")
        main = self._live_stream(field(req, "source", str, None))
        if main.taps:
            # One recording at a time per source: each holds up to max_live_s of audio.
            raise RequestError(f"busy: a live enrollment is already recording on {main.name}",
                               "busy")
        def recorded(x: np.ndarray) -> None:  # in the stream's thread
            try:
                self.worker.submit(lambda: self.enroll_clips(name, [x], replace, ["live"], force),
                                   later)
            except RequestError as err:
                refused: Reply = {"ok": False, "error": str(err)}
                later(lambda: refused)

        def abandoned(why: str) -> None:
            failed: Reply = {"ok": False, "error": f"live enrollment of {name!r} abandoned: "
                                                   f"{why}; nothing was stored"}
            later(lambda: failed)

        main.taps.append(Tap(int(live * SAMPLE_RATE), recorded, abandoned))
        return None

    def enroll_clips(self, name: str, clips: list[np.ndarray], replace: bool,
                     sources: list[str], force: bool = False) -> Reply:
        """Embed, check (the library's ``admit``: same voice, no look-alike name, unless
        ``force``) and store."""
        embedder, settings = self.d.embedder, self.d.settings
        try:
            # Stopping is checked between clips, so that shutdown never has to leave
            # this thread in the middle of an ONNX call.
            e = enroll(embedder, name, clips, sources, settings.vad,
                       settings.enroll.min_speech_s, should_stop=lambda: self.d.stopping)
        except EnrollmentError as err:
            if self.d.stopping:
                raise RequestError(f"vggvoxd is stopping: enrollment of {name!r} abandoned, "
                                   "nothing was stored") from None
            raise RequestError(str(err)) from None
        try:  # one row, not the whole list: only whether this name is enrolled
            existed = bool(self.d.store.speaker(name))
        except StoreError:
            existed = False
        info = admit(self.d.store, embedder.card, e, replace, force)
        total = round(e.speech_s, 3)
        self._announce("added", name, embeddings=info.embeddings, speech_s=total)
        # An existing name without replace gets these clips added to its voiceprint:
        # say so, since a user may have meant a new speaker or --replace.
        action = "replaced" if replace and existed else "appended" if existed else "added"
        return {"ok": True, "speaker": name, "action": action, "embeddings": info.embeddings,
                "speech_s": total, "model": embedder.tag}

    def name(self, req: dict[str, Any], later: Later) -> Reply | None:
        """Enroll an unknown-voice cluster's speech under a name (same checks as enroll)."""
        label = field(req, "unknown", str)
        name = check_name(field(req, "name", str))
        replace = field(req, "replace", bool, False)
        force = field(req, "force", bool, False)
        stream = self._stream_with(label, field(req, "source", str, None))
        unknowns = stream.recognizer.unknowns
        assert unknowns is not None  # _stream_with only finds streams that cluster
        # Take the voice first, so that no turn joins it while it is being enrolled;
        # give it back if the enrollment is refused.
        cluster = unknowns.take(label)
        if cluster is None or not cluster.speech:
            if cluster is not None:
                unknowns.put_back(cluster)
            raise RequestError(f"{label!r} on {stream.name} has no speech kept yet")

        def job() -> Reply:  # in the enrollment worker
            try:
                reply = self.enroll_clips(name, [np.concatenate(cluster.speech)], replace,
                                          [f"{stream.name}:{label}"], force)
            except Exception:  # refused or failed: the voice stays an unknown one
                unknowns.put_back(cluster)
                raise
            unknowns.name(label, name)
            t = stream.stream_s
            self.d.publish(NamedEvent(source=stream.name, t_start=t, t_end=t, unknown=label,
                                      speaker=name, turns=list(cluster.turns)))
            return {**reply, "unknown": label, "source": stream.name,
                    "turns": list(cluster.turns)}

        try:
            self.worker.submit(job, later)
        except RequestError:
            unknowns.put_back(cluster)
            raise
        return None

    def _live_stream(self, source: str | None) -> Stream:
        """The running live source to record from: ``source``, else the first one."""
        lives = self.d.lives
        live = self.d.live(source) if source is not None else (lives[0] if lives else None)
        if live is None:
            raise RequestError(f"no live source {source!r} (sources: "
                               f"{[lv.name for lv in lives]})", "not_found")
        if live.state != "running" or live.stream.source.finished:
            raise RequestError(f"no live audio: the source {live.name} is {live.state}")
        return live.stream

    def streams(self) -> list[Stream]:
        return [*(live.stream for live in self.d.lives), *self.replays.streams()]

    def _stream_with(self, label: str, source: str | None) -> Stream:
        """The stream whose unknown voices include ``label`` (``source`` if given)."""
        have = {s.name: s for s in self.streams() if s.recognizer.unknowns is not None}
        if source is not None and source not in have:
            raise RequestError(f"no stream {source!r} with unknown voices "
                               f"(streams: {sorted(have) or 'none'})")
        found = [s for n, s in have.items() if (source is None or n == source)
                 and label in s.recognizer.unknowns.labels()]  # type: ignore[union-attr]
        if not found:
            known = {n: sorted(s.recognizer.unknowns.labels())  # type: ignore[union-attr]
                     for n, s in have.items()}
            raise RequestError(f"no unknown voice {label!r} (now: {known})", "not_found")
        if len(found) > 1:
            raise RequestError(f"{label!r} is on several streams "
                               f"({sorted(s.name for s in found)}): give 'source'")
        return found[0]

    def unknowns(self) -> dict[str, dict[str, dict[str, object]]]:
        return {s.name: s.recognizer.unknowns.labels() for s in self.streams()
                if s.recognizer.unknowns is not None}

    def remove(self, req: dict[str, Any], later: Later) -> Reply:
        name = field(req, "name", str)
        if not self.d.store.remove(name):
            raise RequestError(f"no speaker named {name!r}", "not_found")
        self._announce("removed", name)
        # A reader holding an old snapshot delays the erasure of the vectors from the
        # store's files; the daemon's run loop retries it (store.retry_erasure).
        return {"ok": True, "removed": name,
                "erasure": "pending" if self.d.store.erasure_pending else "complete"}

    def list(self, req: dict[str, Any], later: Later) -> Reply:
        heard = dict(self.d.executor.last_heard)  # the embedder thread's: a copy
        return {"ok": True, "model": self.d.embedder.tag, "speakers": [
            {"name": s.name, "embeddings": s.embeddings, "seconds": round(s.seconds, 3),
             "model": s.model, "updated": s.updated, "last_heard": heard.get(s.name)}
            for s in self.d.store.speakers()]}

    def status(self, req: dict[str, Any], later: Later) -> Reply:
        return status_reply(self.d, self.streams(), self.unknowns(), len(self.replays))

    def reload(self, req: dict[str, Any], later: Later) -> Reply:
        self.d.reload()
        return {"ok": True, "speakers": len(self.d.voiceprints)}

    def _announce(self, action: str, name: str, **counts: Any) -> None:
        """Publish an enrollment event, dated on the main source's clock."""
        main = self.d.main
        t = main.stream_s if main else 0.0
        self.d.publish(EnrollmentEvent(
            source=main.source.name if main else self.d.source_spec, t_start=t, t_end=t,
            action=action, speaker=name, model=self.d.embedder.tag, **counts))
