"""Each live source's room (``vggvox.rooms``), kept in the voiceprint store.

A source's ``Room`` starts from the rule the source decides with (its own
calibration, else the daemon's) and what the store kept of what it heard
(``vggvox.roomstore``); enrollment clips recorded on the source are its cold
evidence, measured again whenever the voiceprints change. A replay is no room:
its recognizer keeps the fixed rule.

A satellite's room lives in memory only while the satellite is known: when it
leaves (``drop``: a bye, or ``satellites.forget_s`` of silence) its room is saved
and forgotten, and the store gives it back when it rejoins (``add``), so that a
key holder renaming at will cannot grow the daemon (issue 25: 200 names kept 200
rooms, ~11 kB and one store query per enrollment each).

Threads: ``enrollment_changed`` runs where the voiceprints are loaded (the
executor's thread, or the run loop's on SIGHUP); ``add``, ``drop`` and ``save`` in
the run loop (``save`` every ``SAVE_S`` and at shutdown); ``show`` and ``reset`` in
the control thread. Each Room has its own lock; ``_enroll_lock`` makes a room's
enrollment evidence come from the newest voiceprints, whichever thread measures it
last; ``_saved``, ``_gone`` and ``_last_save`` are the run loop's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vggvox import roomstore
from vggvox.calibration import AcceptRule
from vggvox.errors import StoreError
from vggvox.modelcard import ModelCard
from vggvox.rooms import Evidence, Room, clip_evidence
from vggvox.scoring import l2_normalize
from vggvox.storeapi import Store
from vggvox.voiceprints import VoiceprintSet

log = logging.getLogger(__name__)

SAVE_S = 30.0
"""How often what a room heard is written to the store (and at shutdown)."""


class Rooms:
    def __init__(self, sources: list[str], rule: Callable[[str], AcceptRule], adapt: bool,
                 store: Store, card: ModelCard) -> None:
        self.store = store
        self.card = card
        self.rooms: dict[str, Room] = {}
        self.clips_after: dict[str, int] = {}
        """Per source, the last enrollment clip a reset set aside (read by the thread that
        loads the voiceprints, replaced by a control request's reset)."""
        self._rule, self._adapt = rule, adapt
        self._saved: dict[str, int] = {}
        self._gone: set[str] = set()
        """Dropped rooms the store did not take yet: kept, and saved again by ``save``."""
        self._voiceprints: VoiceprintSet | None = None
        """The voiceprints of the last ``enrollment_changed``: a room added later is
        measured against them."""
        self._enroll_lock = threading.Lock()
        for name in sources:
            self.add(name)
        self._last_save = time.monotonic()

    def add(self, name: str) -> None:
        """A source's room, from what the store kept of it: each source's at start, a
        satellite's when it joins (in the run loop, which saves them; other threads
        iterate a copy of ``rooms``): what it heard, and its enrollment clips measured
        against the voiceprints."""
        self._gone.discard(name)
        if name in self.rooms:
            return
        base = self._rule(name)
        kept = self._load(name, base) if self._adapt and base.calibrated else None
        heard, self.clips_after[name] = kept or (None, 0)
        room = Room(name, base, self._adapt, heard)
        self._saved[name] = room.version
        self.rooms[name] = room
        if heard is not None:
            log.info("source %s: room kept in the store: %s", name, room.rule.describe())
        if self._voiceprints is not None:
            self._enroll(room, self._voiceprints)

    def drop(self, name: str) -> None:
        """A satellite left: save its room and forget it (the run loop, once its stream
        has stopped). A room the store does not take stays until ``save`` writes it,
        unless the store is read-only: it never will (and a restart loses it too)."""
        room = self.rooms.get(name)
        if room is None:
            return
        if self._write(name, room) or self.store.read_only is not None:
            self._forget(name)
        else:
            self._gone.add(name)

    def _forget(self, name: str) -> None:
        self._gone.discard(name)
        self.rooms.pop(name, None)
        self.clips_after.pop(name, None)
        self._saved.pop(name, None)

    def get(self, source: str) -> Room | None:
        return self.rooms.get(source)

    def _load(self, source: str, base: AcceptRule) -> tuple[Evidence, int] | None:
        assert base.calibration is not None
        try:
            return roomstore.load(self.store, source, self.card.sha256, base.calibration)
        except StoreError as e:
            log.error("source %s: cannot read its room from the store, starting afresh: %s",
                      source, e)
            return None

    # -- enrollment (where the voiceprints are loaded) ------------------------------------

    def enrollment_changed(self, voiceprints: VoiceprintSet) -> None:
        """Score each source's enrollment clips against the other voiceprints again."""
        self._voiceprints = voiceprints
        for room in list(self.rooms.values()):
            self._enroll(room, voiceprints)

    def _enroll(self, room: Room, voiceprints: VoiceprintSet) -> None:
        if not room.adapts:
            return
        assert room.base.calibration is not None
        with self._enroll_lock:  # the snapshot inside: the last to measure has the newest
            snap = voiceprints.snapshot()
            try:
                clips = [c for c in roomstore.channel_clips(
                    self.store, room.source, self.card.embedding_size,
                    self.clips_after.get(room.source, 0)) if c[0] in snap.names]
            except StoreError as e:
                log.error("source %s: cannot read its enrollment clips: %s", room.source, e)
                return
            if len(snap) < 2 or not clips:
                room.enrolled(Evidence())
                return
            vectors = l2_normalize(np.stack([v for _, _, v in clips]))
            cosines = vectors @ snap.matrix.T
            room.enrolled(clip_evidence(room.base.calibration, list(snap.names), cosines,
                                        [(speaker, secs) for speaker, secs, _ in clips]))

    # -- the store (run loop) -------------------------------------------------------------

    def save(self, force: bool = False) -> None:
        """Write each room whose heard evidence changed, every SAVE_S (``force``: now)."""
        now = time.monotonic()
        if not force and now - self._last_save < SAVE_S:
            return
        self._last_save = now
        for name, room in list(self.rooms.items()):
            if self._write(name, room) and name in self._gone:
                self._forget(name)

    def _write(self, name: str, room: Room) -> bool:
        """Save the room if what it heard changed since; False when the store refused."""
        version, state = room.state()
        if not room.adapts or version == self._saved[name]:
            return True
        assert room.base.calibration is not None
        try:
            roomstore.save(self.store, name, self.card.sha256, room.base.calibration, state,
                           self.clips_after[name])
        except StoreError as e:
            log.error("source %s: cannot keep its room in the store: %s", name, e)
            return False
        self._saved[name] = version
        return True

    # -- control --------------------------------------------------------------------------

    def pick(self, source: str | None) -> list[Room]:
        """The rooms a request names (every one when None); ValueError for no such source."""
        if source is None:
            return list(self.rooms.values())
        room = self.rooms.get(source)
        if room is None:
            raise ValueError(f"no source {source!r} (sources: "
                             f"{', '.join(sorted(self.rooms)) or 'none'})")
        return [room]

    def show(self, source: str | None) -> dict[str, Any]:
        return {room.source: room.summary() for room in self.pick(source)}

    def reset(self, source: str | None) -> list[str]:
        """Back to the calibration as fitted: forget what the named rooms heard, and set
        aside the enrollment clips recorded on them so far (clips enrolled there later
        count again), in memory and in the store."""
        done = []
        rooms = self.pick(source)
        last = roomstore.last_clip(self.store)
        for room in rooms:
            self.clips_after[room.source] = last
            room.reset()
            if room.adapts:
                assert room.base.calibration is not None
                # Written now, so a restart right after keeps the reset; the reset also
                # bumped the room's version, so the run loop's next save writes it
                # again, over one that was under way with the old evidence.
                roomstore.save(self.store, room.source, self.card.sha256,
                               room.base.calibration, room.state()[1], last)
            log.info("source %s: room reset by request: %s", room.source, room.rule.describe())
            done.append(room.source)
        return done
