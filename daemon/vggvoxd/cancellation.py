"""Enrollments a client can cancel: the ``request`` id of ``enroll`` and ``name``, and
the ``cancel`` op.

A client gives its enrollment an id (``request``: 8 to 64 printable characters)
and, if its user gives up (Ctrl-C), sends ``cancel`` with that id. The answer
says, for sure, what became of it:

- ``cancelled``: nothing was stored and nothing will be: a live recording's tap
  is dropped, a queued job is skipped, a running one stops before its store
  transaction (its own reply is then an error with code ``cancelled``). An
  enrollment that had failed anyway is ``cancelled`` too, with its ``error``.
- ``done``: it was stored already; the answer carries its ``action`` and ``speaker``.
- ``unknown``: an id never seen, or one finished longer ago than the last
  ``REMEMBER`` enrollments.

A cancel and the store write never both win: ``commit`` checks for a cancel
and marks the enrollment ``committing`` under ``_lock``, then the write runs
*outside* it. A ``cancel`` of a committing enrollment is not answered at once:
it waits (its reply deferred through the control socket's ``later``) until the
write ends, and is then ``done``, or ``cancelled`` with the error if the write
failed. So an enrollment is either stored and ``done``, or ``cancelled`` and
never stored, and no thread waits for the store: the write may wait up to the
store's busy timeout (10 s) for another process's lock, and holding ``_lock``
through it stalled the control thread (every request) and a microphone's
stream thread (a recording handed on).

Threads: ``track`` and ``cancel`` run in the control thread, a recording's
``recorded`` (``start``) in its stream's thread, the job (``start``, ``commit``,
``end``) in the enrollment worker, which also answers the cancels that waited
for its write; every change of state is under ``_lock``, which is only held for
a few attribute changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vggvox.protocol.errors import CANCELLED
from vggvox.protocol.replies import CancelReply
from vggvoxd.control import Later, RequestError, Wire

REMEMBER = 64
"""Finished request ids remembered (the latest), for a late ``cancel``."""


class CancelledError(RequestError):
    """The enrollment was cancelled by its client: nothing was stored."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CANCELLED)


@dataclass
class Tracked:
    """One enrollment, from its request to its end."""

    id: str | None
    what: str
    """For messages: e.g. "enrollment of 'bob'"."""
    state: str = "queued"
    """recording, queued, running, committing (its store write under way), then done,
    cancelled or failed."""
    result: dict[str, Any] = field(default_factory=dict)
    """When done: the reply's action and speaker; when failed: its error."""
    on_cancel: Callable[[], None] | None = None
    """A recording's: called (under the lock) when cancelled while it records, to drop
    its tap and answer its request (a queued or running job answers for itself)."""
    waiting: list[Later] = field(default_factory=list)
    """The ``later`` of each ``cancel`` that came while it committed: answered by the
    worker when the write ends."""

    @property
    def cancelled(self) -> bool:
        return self.state == "cancelled"


class Cancellations:
    """The enrollments under way and the latest finished, by ``request`` id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Tracked] = {}
        self._finished: OrderedDict[str, Tracked] = OrderedDict()

    def track(self, rid: str | None, what: str, state: str = "queued") -> Tracked:
        """A new enrollment; a RequestError if ``rid`` is one still under way."""
        t = Tracked(rid, what, state)
        if rid is not None:
            with self._lock:
                if rid in self._active:
                    raise RequestError(f"request {rid!r} is already under way: give each "
                                       "request its own id")
                self._finished.pop(rid, None)
                self._active[rid] = t
        return t

    def start(self, t: Tracked, state: str = "running") -> None:
        """The enrollment moves on (recorded -> queued, queued -> running), unless it
        was cancelled meanwhile: then CancelledError, and it goes no further."""
        with self._lock:
            if t.cancelled:
                raise CancelledError(f"{t.what} cancelled (request {t.id}): nothing was stored")
            t.state = state

    @contextmanager
    def commit(self, t: Tracked) -> Iterator[None]:
        """Around the store write: refused if cancelled; else ``t`` is ``committing``
        while the block runs, outside the lock (a cancel meanwhile is answered when it
        ends). The block sets ``t.result`` (action, speaker); once it returns, ``t`` is
        done; if it raises, ``t`` failed with that error."""
        with self._lock:
            if t.cancelled:
                raise CancelledError(f"{t.what} cancelled (request {t.id}): nothing was stored")
            t.state = "committing"
        try:
            yield
        except BaseException as e:
            self._settle(t, "failed", {"error": str(e) or type(e).__name__})
            raise
        self._settle(t, "done", t.result)

    def _settle(self, t: Tracked, state: str, result: dict[str, Any]) -> None:
        """The write has ended: ``t`` is done or failed, and the cancels that waited for
        it get their answer (in the worker; the control thread sends them)."""
        with self._lock:
            t.state, t.result = state, result
            waiting, t.waiting = t.waiting, []
            if not waiting:  # no cancel came (one without an id cannot come)
                return
            answer = self._answer(t)
        for later in waiting:
            later(lambda: answer)

    def end(self, t: Tracked, reply: Wire | None) -> None:
        """The enrollment's reply is made: remember how it ended (not stored and not
        cancelled: failed, with the reply's error)."""
        with self._lock:
            if t.state not in ("done", "cancelled", "failed"):  # failed: by its write
                t.state = "failed"
                t.result = {"error": str((reply or {}).get("error", "no reply"))}
            self._retire(t)

    def abandon(self, t: Tracked, error: str) -> bool:
        """A recording whose source stopped first: failed, unless cancelled meanwhile
        (False: then its request has its answer already)."""
        with self._lock:
            if t.state != "recording":
                return False
            t.state, t.result = "failed", {"error": error}
            self._retire(t)
            return True

    def cancel(self, rid: str, later: Later) -> Wire | None:
        """The ``cancel`` op's answer (see the module's docstring); None while the
        enrollment's store write is under way: ``later`` gets it when the write ends."""
        with self._lock:
            t = self._active.get(rid) or self._finished.get(rid)
            if t is None:
                return CancelReply(request=rid, state="unknown").to_wire()
            if t.state == "committing":
                t.waiting.append(later)
                return None
            if t.state in ("recording", "queued", "running"):
                recording, t.state = t.state == "recording", "cancelled"
                if recording:  # no job will answer or end it: the recording was all
                    if t.on_cancel is not None:
                        t.on_cancel()
                    self._retire(t)
            return self._answer(t)

    @staticmethod
    def _answer(t: Tracked) -> Wire:
        """Inside the lock: what a cancel of ``t`` says, once it is past committing:
        done (its action and speaker), else cancelled (with its error, if it failed)."""
        assert t.id is not None  # a cancel finds an enrollment by its id
        if t.state == "done":
            return CancelReply(request=t.id, state="done", action=t.result.get("action"),
                               speaker=t.result.get("speaker")).to_wire()
        error = t.result.get("error") if t.state == "failed" else None
        return CancelReply(request=t.id, state="cancelled", error=error).to_wire()

    def _retire(self, t: Tracked) -> None:
        """Inside the lock: from under way to remembered (the latest REMEMBER)."""
        if t.id is None or self._active.get(t.id) is not t:
            return
        del self._active[t.id]
        self._finished[t.id] = t
        while len(self._finished) > REMEMBER:
            self._finished.popitem(last=False)
