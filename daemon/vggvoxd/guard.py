"""A guarded stage loop: a failure is logged, counted and retried, never silent.

Each of the daemon's own threads runs its loop body through ``Guard.run``: the
embedder, each stream's segmenter, the search index, the events and control
sockets, the enrollment worker and the metrics endpoint's accept loop (each a
``Stage``; every one in ``Health.stages()`` (health.py) makes ``Health.healthy()``). An
unexpected exception is logged with its traceback and counted, and the loop
goes on after a short back-off. The threads that are not, by design: the run
loop (the supervisor itself: what escapes it ends the process), each source's
thread or PortAudio's callback (its ``LiveSource`` restarts a source that dies,
with back-off), a metrics connection's thread (one request), and pyzmq's CURVE
authenticator (not ours to guard: ``Health.healthy()`` checks it is alive).

After ``MAX_FAILURES`` failures in a row the stage gives up and calls
``on_fatal``: the daemon exits non-zero, so that its service manager restarts
it. ``health()`` is what ``status`` shows of the stage.

Only work done ends a run of failures: a step that found nothing to do returns
None, which counts neither way. Otherwise the idle turns between the seldom
windows of a live microphone would reset the count after each failure, and a
stage that fails on every piece of work would never give up (measured: a
decider that always raised, fed speech at real time with pauses, failed 54
times in 48 s and the daemon went on, silent and "ok").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

MAX_FAILURES = 5
"""Failures in a row after which a stage gives up (the daemon exits)."""


class Stage(Protocol):
    """A thread of the daemon's own: its loop runs under ``guard``, and ``healthy`` says
    whether it is alive and, where that can be told, making progress."""

    guard: Guard

    def healthy(self) -> bool: ...


class Guard:
    """One stage's failures. Its fields are written by the stage's own thread only
    (the one in ``run``); status, metrics and the watchdog read them."""

    def __init__(self, name: str, on_fatal: Callable[[str], None]) -> None:
        self.name = name
        self.on_fatal = on_fatal
        self.failures = 0
        """Loop bodies that raised, since start."""
        self.last_error = ""
        self.failed = False
        self.in_a_row = 0
        self.progress = time.monotonic()
        """When a loop body last completed."""

    def run(self, step: Callable[[], bool | None], stop: threading.Event) -> None:
        """Call ``step`` until it returns False or ``stop`` is set, guarding each call.

        ``step`` returns True when it did work, None when it found none (idle by
        design), False when the stage is done."""
        backoff = 0.1
        while not stop.is_set():
            try:
                did = step()
                if did is False:
                    return
                self.progress = time.monotonic()  # the loop goes round: not stuck
                if did:
                    self.in_a_row, backoff = 0, 0.1
            except Exception as e:  # a stage must never die silently: log, count, go on
                self.failures += 1
                self.in_a_row += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("%s: failed (%d in a row)", self.name, self.in_a_row)
                if self.in_a_row >= MAX_FAILURES:
                    self.failed = True
                    self.on_fatal(f"{self.name} failed {self.in_a_row} times in a row: "
                                  f"{self.last_error}")
                    return
                stop.wait(backoff)
                backoff = min(2 * backoff, 2.0)

    def health(self) -> dict[str, object]:
        state = "failed" if self.failed else "retrying" if self.in_a_row else "ok"
        return {"state": state, "failures": self.failures, "last_error": self.last_error,
                "since_progress_s": round(time.monotonic() - self.progress, 3)}
