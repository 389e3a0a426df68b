"""``--ray ADDRESS``: a batch command's file list as shards of Ray tasks on a cluster.

The only module that imports ray, and it is imported only when ``--ray`` is given
(``pip install 'vggvox[ray]'``). ``ordered_map`` cuts the items into shards of a few
files, runs each shard as one Ray task, and yields the per-item results in the order
of the items, as the local pool's ``imap`` does: the caller merges them exactly as it
merges a local run's, so the results are the same.

Each Ray worker process runs the run's ``setup`` once (it loads the model, as a
local pool worker's initializer does) and keeps it for every shard it is given. A
shard whose worker dies (killed, out of memory, its node lost) is run again by Ray
(``max_retries``), on any node; its results are taken once, from the attempt that
finished, and each lands at its item's index: nothing is counted twice, whatever
order the shards end in.

Every node must see the files and the model card at the same paths (a shared file
system), and have the same vggvox installed. The workers work in the driver's folder,
so that relative paths mean the same there.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from vggvox.errors import VggvoxError

T = TypeVar("T")
R = TypeVar("R")

NEEDS_EXTRA = "--ray needs the ray extra: pip install 'vggvox[ray]'"
MAX_RETRIES = 3
"""Attempts after a shard's worker dies (Ray's default for tasks, said out loud)."""
SHARDS_PER_CPU = 4
"""Shards a run is cut into per cluster CPU: enough that a slow or lost shard is a small
part of the work, few enough that Ray's per-task cost stays small beside the files'."""
MAX_SHARD = 32
IN_FLIGHT_PER_CPU = 2
"""Shards submitted ahead of the one awaited, per CPU: every CPU busy, and the results
held in the driver bounded however long the list."""
CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


def add_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--ray ADDRESS`` of batch-offline, verify and identify."""
    p.add_argument("--ray", metavar="ADDRESS",
                   help=f"{what} on the Ray cluster whose head is at ADDRESS (HOST:PORT, or "
                        "auto: the one started on this machine), in shards of a few files, "
                        "each worker loading the model once; the results are the same as a "
                        "local run's, and --workers is not used (needs pip install "
                        "'vggvox[ray]'; every node sees the files at the same paths)")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise VggvoxError(NEEDS_EXTRA) from None
    return ray


def require() -> None:
    """Fail now, in one line, where ray is not installed (before any other work)."""
    _ray()


def _gcs_address(address: str) -> str:
    """``address`` as host:port, checked to answer: ``ray.init`` waits forever for a
    cluster that is not there."""
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
            address = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ImportError, AttributeError) as e:
            raise VggvoxError(f"--ray auto: no running Ray cluster found on this machine "
                              f"({e})") from None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise VggvoxError(f"--ray {address}: give HOST:PORT of a Ray head node, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise VggvoxError(f"--ray {address}: no Ray cluster answers there "
                          f"({e.strerror or e})") from None
    return address


@contextmanager
def connected(address: str) -> Iterator[Any]:
    """The ray module, connected to the cluster at ``address`` for this block."""
    ray = _ray()
    address = _gcs_address(address)
    try:
        # The workers' own output stays in the cluster's logs: a failure comes back
        # to the driver as the task's exception.
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise VggvoxError(f"--ray {address}: cannot connect: {e}") from None
    try:
        with _cluster_notes_on_stderr(), _sigterm_exits():
            yield ray
    finally:
        ray.shutdown()


@contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM ends the command with status 143, as it does a local pool's run: ray.init
    installs a handler that prints a stack dump and exits 1. Python's runs the finally
    blocks on the way out (the driver disconnects; Ray ends the run's tasks)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        global _terminated
        _terminated = signum
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


_terminated: int | None = None
"""The signal that ended the run (``_sigterm_exits``): inside ``ray.get`` Ray turns the
handler's SystemExit into one of its own, with status 1."""


@contextmanager
def _cluster_notes_on_stderr() -> Iterator[None]:
    """The cluster's notes to the driver (a worker died, its task is retried) on stderr:
    Ray prints them to stdout, which carries the command's own output (--json, --rttm -).
    Its printing function is looked up at each note, so a wrapper here catches them all;
    where this Ray has no such function, nothing is changed."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None:
        yield
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    worker.print_to_stdstream = to_stderr
    try:
        yield
    finally:
        worker.print_to_stdstream = printer


_ready: str | None = None
"""The run whose setup this worker process has done."""


def _run_shard(run: str, cwd: str, setup: Callable[..., None], setup_args: tuple[Any, ...],
               fn: Callable[[Any], Any], shard: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """In a Ray worker: the run's setup once per process, then ``fn`` over the shard."""
    global _ready
    if _ready != run:
        if os.path.isdir(cwd):  # the driver's folder, where this node has it
            os.chdir(cwd)
        setup(*setup_args)
        _ready = run
    return [(i, fn(item)) for i, item in shard]


def shard_size(n_items: int, cpus: int) -> int:
    return max(1, min(MAX_SHARD, math.ceil(n_items / (SHARDS_PER_CPU * max(1, cpus)))))


def ordered_map(address: str, fn: Callable[[T], R], items: Sequence[T],
                setup: Callable[..., None], setup_args: tuple[Any, ...] = (),
                shard: int | None = None) -> Iterator[R]:
    """``fn`` of each item on the cluster at ``address``, yielded in the order of
    ``items``. ``fn``, ``setup`` and the items must be picklable (functions of an
    importable module), and ``fn`` must catch its own per-item errors."""
    with connected(address) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = shard or shard_size(len(items), cpus)
        remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_run_shard)
        # Put once: every shard refers to the same copy in the object store.
        args_ref = ray.put(setup_args)
        run, cwd = uuid.uuid4().hex, os.getcwd()
        indexed = list(enumerate(items))
        shards = deque(indexed[i:i + size] for i in range(0, len(indexed), size))
        log.info("ray: %d items in %d shards of %d on %d CPUs", len(items), len(shards),
                 size, cpus)
        pending: deque[tuple[list[tuple[int, T]], Any]] = deque()
        window = IN_FLIGHT_PER_CPU * cpus
        nxt = 0
        while shards or pending:
            while shards and len(pending) < window:
                part = shards.popleft()
                pending.append((part, remote.remote(run, cwd, setup, args_ref, fn, part)))
            part, ref = pending.popleft()
            try:
                got = ray.get(ref)
            except SystemExit:
                if _terminated is not None:
                    raise SystemExit(128 + _terminated) from None
                raise
            except ray.exceptions.RayError as e:  # retries spent, or the cluster gone
                raise VggvoxError(f"--ray {address}: a shard of {len(part)} files failed: "
                                  f"{str(e).splitlines()[0]}") from None
            for i, result in _checked(part, got):
                if i != nxt:
                    raise RuntimeError(f"ray: item {i} came back where {nxt} was due")
                nxt += 1
                yield result


def _checked(part: list[tuple[int, Any]], got: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """A shard's results, each at its own item's index, each once."""
    if [i for i, _ in got] != [i for i, _ in part]:
        raise RuntimeError("ray: a shard came back with other items than it was given")
    return got
