"""The search-index stage: builds the voiceprints' ANN index off the decision path.

Past ``search.index_above`` voiceprints the set is searched through a faiss index
(``vggvox.search``). Building it takes seconds (24 s at a million on one core);
built on a decision it would stall the embed executor past its watchdog. So the
daemon's set never builds on search (``build_on_search`` false), and this
thread builds after each load of the store: decisions stay exact (slower, never
wrong) until the index is ready, then switch to it. A later load with few
changes reuses the index (``Searcher.derive``); after the follower's patch of a few
speakers (``VoiceprintSet.update``) the derivation takes the patch's own map of rows
(about 10 ms at 100,000, where comparing every row took 0.05-0.16 s), so whichever
comes first after a change, this thread or a decision, does not wait long for it.

Owns nothing but its thread and ``building`` (written there, read by ``status``);
``wake`` may be called from any thread. Guarded
like every stage: a failed build is logged and counted and tried again on the
next wake, and the decisions stay exact meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vggvox.voiceprints import VoiceprintSet
from vggvoxd.guard import Guard


class SearchIndexer:
    def __init__(self, voiceprints: VoiceprintSet,
                 on_fatal: Callable[[str], None] = lambda why: None) -> None:
        self.voiceprints = voiceprints
        self.guard = Guard("search index", on_fatal)
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-index", daemon=True)
        self.building = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        # A build in progress is inside faiss and cannot be interrupted: don't wait for it
        # (the thread is a daemon thread, and holds nothing that must be released).
        self._thread.join(timeout=0.5)

    def wake(self) -> None:
        """The voiceprints were (re)loaded: build or update the index if their size needs it."""
        self._due.set()

    def _run(self) -> None:
        self.guard.run(self._step, self._stop)

    def healthy(self) -> bool:
        """Not given up, and running (or not started, or stopped on request). A build
        may take long: decisions stay exact meanwhile, so that is no stall."""
        return not self.guard.failed and (self._thread.is_alive() or self._stop.is_set()
                                          or self._thread.ident is None)

    def _step(self) -> bool | None:
        if not self._due.wait(0.5) or self._stop.is_set():
            return None
        self._due.clear()
        self.building = True
        try:
            self.voiceprints.prepare_search()
        finally:
            self.building = False
        return True

    def health(self) -> dict[str, object]:
        """For ``status``: the search mode now, and the stage's own state."""
        s = self.voiceprints.last_searcher
        mode = ("index" if s.ready else "building" if self.building and s.indexed
                else "exact")
        return {**self.guard.health(), "mode": mode, "voiceprints": len(s.names),
                "index_above": s.settings.index_above,
                "build_s": None if s.build_s is None else round(s.build_s, 1)}
