"""The store follower: keeps the daemon's voiceprints (in memory) in step with a store
that other daemons may write too.

Several daemons may share one store (a PostgreSQL database, or one SQLite file).
Each keeps its voiceprints in memory (a ``VoiceprintSet``) and decides from them
alone; this thread follows the store: it blocks in ``store.wait_for_change`` (a
PostgreSQL NOTIFY on a LISTEN connection of its own; SQLite only sleeps), at most
``POLL_S``, then compares the store's ``generation()`` with the one it loaded, and
reloads the voiceprints when they differ. So a notification lost (or a SQLite
writer, which notifies nobody) is caught within ``POLL_S``. A small set is read
whole; from ``INCREMENTAL_ABOVE`` speakers on, the store's change log
(``vggvox.storechanges``) names the speakers written since the generation held,
only those are read (one query), and they are patched into the set
(``VoiceprintSet.update``); a removal is logged without the speaker's name, so
after one the names held are compared with the store's names (one names-only
read) and those gone leave the set; where the log cannot say (pruned, an older writer, a
store copied in) the set is read whole. After a load the search
index's builder is woken and the rooms measure their enrollment clips again
(``on_load``, in the loading thread). No decision ever waits for the store.

When the store cannot be reached (``StoreUnavailable``: the database is down) the
daemon goes on deciding from the voiceprints it has; the follower says so once
per outage in the log, and in ``status`` and the metrics (``health``), and tries
again every ``POLL_S``. When the store answers again the voiceprints are loaded
whole (whatever happened meanwhile) and the log says it resynchronised.

Threads: the follower's own (``store-follower``, under its guard) waits and
reloads; ``refresh`` is also called by the control thread and the enrollment
worker after this daemon's own enrollment or removal (so that it takes effect at
once, as before), and by the run loop on SIGHUP. Loads run one at a time under
``_lock``, so that an older load never lands after a newer one; every field below
is written under it, and ``status`` and the metrics read each in one step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vggvox.errors import ModelMismatchError, StoreUnavailable, VggvoxError
from vggvox.storeapi import Store
from vggvox.storebinding import ModelId
from vggvox.storechanges import Changes
from vggvox.voiceprints import VoiceprintSet
from vggvoxd.guard import Guard

log = logging.getLogger(__name__)

POLL_S = 1.0
"""Longest time between two looks at the store's generation: how soon a lost
notification, a SQLite writer's change, or a store that came back is noticed."""
WAIT_S = 0.25
"""One wait for a notification: how long ``stop`` may wait for the thread."""
INCREMENTAL_ABOVE = 256
"""From this many speakers on, a change reads only the speakers the change log names,
not the whole set again: every daemon of a fleet reads on every change, and a whole
read took 0.06-0.15 s at 1,500 and 7-11 s at 100,000 (bench/bench_fleet_store.py, on
a loaded 2-core machine). Below it a whole read costs little, and rebuilds the set
from the store's rows."""
MOST_CHANGES = 1_000
"""More changed speakers than this at once: the whole set is read again (their rows
are read in one query, and the set's patch copies its matrix once either way)."""


def backend(store: Store) -> str:
    """``postgresql`` or ``sqlite``, from the store's location (for status, metrics)."""
    where = store.location
    return "postgresql" if where.startswith(("postgresql:", "postgres:")) else "sqlite"


class StoreFollower:
    def __init__(self, store: Store, voiceprints: VoiceprintSet, model: ModelId,
                 on_load: Callable[[], None] = lambda: None,
                 on_fatal: Callable[[str], None] = lambda why: None,
                 poll_s: float = POLL_S, incremental_above: int = INCREMENTAL_ABOVE) -> None:
        self.store, self.voiceprints, self.model = store, voiceprints, model
        self.on_load = on_load
        self.poll_s, self.incremental_above = poll_s, incremental_above
        self.guard = Guard("store", on_fatal)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-follower", daemon=True)
        self._looked = 0.0
        """When the thread last compared generations (its own)."""
        self.generation = -1
        """The store's generation the voiceprints in memory were loaded at (-1: none yet)."""
        self.reachable = True
        """False from a failed look at the store until one succeeds."""
        self.last_sync: float | None = None
        """Wall time of the last look that found the voiceprints in step."""
        self.last_error = ""
        """Why the store was last unreachable (or failed to load)."""
        self.outages = 0
        """Times the store went away, since start."""
        self.resyncs = 0
        """Loads after the store came back, since start."""
        self.loads = 0
        """Loads of the voiceprints, since start."""
        self.load_s: float | None = None
        """How long the last load took (s)."""

    def check_model(self, allow_empty: bool) -> None:
        """Before start. A store of another model's voiceprints would leave everyone
        unknown, silently but for one log line: refuse to start, unless told to run with
        nobody enrolled. A store that cannot be reached refuses too (StoreUnavailable:
        the daemon exits 1 and systemd restarts it): with no voiceprints in memory it
        would name nobody, and say nothing of it on the events; once started, an outage
        leaves it deciding from the voiceprints it has."""
        try:
            with self._lock:  # the first load; on_load waits for start (no rooms yet)
                self._load(self.store.generation(), whole=True)
                self.last_sync = time.time()
        except ModelMismatchError as e:
            if not allow_empty:
                raise ModelMismatchError(f"{e} (--allow-empty starts with nobody enrolled)") \
                    from None
            log.error("%s; running with nobody enrolled (--allow-empty)", e)

    def start(self) -> None:
        """Catch up (in the caller's thread), then follow the store in the thread."""
        if not self.refresh():
            self.on_load()  # loaded by check_model: the index and the rooms, now
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # The thread may be in wait_for_change for up to WAIT_S: wait that long, no more.
        self._thread.join(timeout=WAIT_S + 1.0)

    def _run(self) -> None:
        self.guard.run(self._step, self._stop)

    def _step(self) -> bool | None:
        try:
            woken = self.store.wait_for_change(min(WAIT_S, self.poll_s))
        except StoreUnavailable as e:
            self._down(e)
            self._stop.wait(self.poll_s)  # the server is down: no busy loop
            return None
        if self._stop.is_set():
            return False
        if not woken and time.monotonic() - self._looked < self.poll_s:
            return None
        self._looked = time.monotonic()
        return self.refresh() or None

    def refresh(self, force: bool = False) -> bool:
        """Reload the voiceprints if the store changed since the last load (``force``:
        anyway). Any thread. True when they were loaded. A store that cannot be read is
        logged, and its error kept; one that cannot be reached is an outage."""
        with self._lock:
            generation = self.generation
            try:
                generation = self.store.generation()
                came_back = not self.reachable
                loaded = force or came_back or generation != self.generation
                if loaded:
                    self._load(generation, whole=force or came_back)
                self._up(came_back)
            except StoreUnavailable as e:
                self._down(e)
                return False
            except VggvoxError as e:
                # Not again until the store changes (another model's voiceprints, say).
                self.generation, self.last_error = generation, str(e)
                log.error("cannot load voiceprints: %s", e)
                return False
        if loaded:
            self.on_load()  # outside the lock: the rooms read the store again
        return loaded

    def _load(self, generation: int, whole: bool) -> None:
        """Under the lock: the store's voiceprints into memory, read whole, or (a large
        set, a few changes) only the speakers the store's change log names since the
        generation held, patched into the set in one new snapshot."""
        t0 = time.perf_counter()
        changed = None
        if not whole and self.generation >= 0 and \
                len(self.voiceprints) >= self.incremental_above:
            changed = self.store.changed_since(self.generation, generation)
        if changed is None or len(changed.written) > MOST_CHANGES:
            self.voiceprints.load(self.store, self.model)
            how = "read whole"
        else:
            how = self._apply(changed)
        self.generation = generation
        self.loads, self.load_s = self.loads + 1, time.perf_counter() - t0
        log.info("voiceprints: %d speakers (store generation %d, %s, %.3f s)",
                 len(self.voiceprints), generation, how, self.load_s)

    def _apply(self, changed: Changes) -> str:
        """Read the written speakers (one query) and patch them in; a speaker the store no
        longer holds (damaged: logged by the store) leaves the set. A removal names nobody
        (``storechanges``): then the names held are compared with the store's, and those
        it no longer has leave too (a names-only read: later changes come at the next
        generation, whose log is read from the one held now)."""
        written = sorted(changed.written)
        names, prints = self.store.voiceprints_of(written, self.model)
        found = dict(zip(names, prints, strict=True))
        gone = [n for n in written if n not in found]
        if changed.removals:
            present = self.store.names()
            gone += [n for n in self.voiceprints.names if n not in present and n not in found
                     and n not in changed.written]
        self.voiceprints.update(found, gone)
        return f"{len(found)} changed, {len(gone)} gone"

    def _down(self, e: StoreUnavailable) -> None:
        """A look failed: said once per outage (the follower tries every poll_s)."""
        self.last_error = str(e)
        if self.reachable:
            self.reachable = False
            self.outages += 1
            log.error("%s; deciding from the %d voiceprints in memory, enrollments and "
                      "removals refused until it is back", e, len(self.voiceprints))

    def _up(self, came_back: bool) -> None:
        self.last_sync = time.time()
        if came_back:
            self.reachable = True
            self.resyncs += 1
            log.warning("store %s reachable again: resynchronised, %d voiceprints "
                        "(generation %d)", self.store.location, len(self.voiceprints),
                        self.generation)

    def healthy(self) -> bool:
        """Not given up, and running (or not started, or stopped on request). An
        unreachable store is no failure of the daemon's: it decides from memory."""
        return not self.guard.failed and (self._thread.is_alive() or self._stop.is_set()
                                          or self._thread.ident is None)

    def health(self) -> dict[str, object]:
        """The ``store`` stage of ``status``: its thread's guard, where the store is,
        whether it answers (state ``unreachable`` while it does not), and how fresh
        the voiceprints in memory are (``last_sync``: Unix time)."""
        h = self.guard.health()
        if not self.reachable and h["state"] == "ok":
            h["state"] = "unreachable"
        return {**h, "last_error": self.last_error or h["last_error"],
                "backend": backend(self.store), "location": self.store.location,
                "reachable": self.reachable, "generation": self.generation,
                "last_sync": None if self.last_sync is None else round(self.last_sync, 3),
                "outages": self.outages, "resyncs": self.resyncs, "loads": self.loads,
                "load_s": None if self.load_s is None else round(self.load_s, 3)}
