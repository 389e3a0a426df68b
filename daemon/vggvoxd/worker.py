"""The enrollment worker: slow requests run here, so the control thread stays quick.

An enrollment embeds up to minutes of audio; run in the control thread it would
hold every other request (``status``, ``list``) for as long. The control thread
hands such work to this one thread instead, and the reply goes back through
the control socket's ``later`` queue when it is done. One job at a time (they
are CPU-bound anyway), at most ``MAX_PENDING`` waiting; more are refused at
once with a clear reply.

Threads: ``submit`` is called by the control thread (or a stream's tap); the
jobs run in this worker's thread, under a ``Guard`` like every other stage (a
job's own failure is its error reply; the guard catches what fails around it);
their replies are sent by the control thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from vggvox.protocol.errors import BUSY
from vggvoxd.control import Later, RequestError, Wire, reply_of
from vggvoxd.guard import Guard

MAX_PENDING = 4
"""Slow requests that may wait for the worker; beyond, they are refused."""

Job = tuple[Callable[[], Wire], Later]


class Worker:
    def __init__(self, on_fatal: Callable[[str], None] = lambda why: None) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._run, name="enroll-worker", daemon=True)
        self.guard = Guard("enroll-worker", on_fatal)
        self._stop = threading.Event()
        self.done = 0
        self.failed = 0
        self._outstanding = 0
        """Jobs submitted and not yet answered (under ``_count``)."""
        self._count = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 0.5) -> None:
        """Ask the worker to end after its job; a job inside one long ONNX call cannot
        stop, so the wait is short (vggvoxd then exits without it, see main)."""
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass  # the worker checks the daemon's stopping flag between clips anyway
        self._thread.join(timeout)

    def submit(self, job: Callable[[], Wire], later: Later) -> None:
        """Run ``job`` in the worker; its reply (or its error) goes out through ``later``."""
        try:
            with self._count:
                self._jobs.put_nowait((job, later))
                self._outstanding += 1
        except queue.Full:
            raise RequestError(f"busy: {MAX_PENDING} enrollments are already waiting; "
                               "try again when they are done", BUSY) from None

    @property
    def busy(self) -> bool:
        """Still running a job (after ``stop`` timed out)."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        return self._jobs.qsize()

    @property
    def idle(self) -> bool:
        """No job running or waiting."""
        with self._count:
            return self._outstanding == 0

    def alive(self) -> bool:
        """Running, or stopped on request: not dead of a failure."""
        return not self.guard.failed and (self._thread.is_alive() or self._stop.is_set()
                                          or self._thread.ident is None)

    def healthy(self) -> bool:
        """As a stage (guard.py): alive is healthy, as it waits for jobs by design."""
        return self.alive()

    def _run(self) -> None:
        self.guard.run(self._step, self._stop)

    def _step(self) -> bool | None:
        """One job: True when one ran, None when none came, False on ``stop``."""
        try:
            item = self._jobs.get(timeout=0.2)
        except queue.Empty:
            return None
        if item is None:
            self._stop.set()
            return False
        job, later = item
        try:
            reply = reply_of(job)  # a failure is an error reply: the worker goes on
            if reply is not None and reply.get("ok", True):
                self.done += 1
            else:
                self.failed += 1
            later(lambda r=reply: r)  # type: ignore[misc]
        finally:
            with self._count:
                self._outstanding -= 1
        return True
