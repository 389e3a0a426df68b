"""Embedding many files: in-process or over worker processes, with an optional cache.

Every failure is caught per file and returned as a reason, so that one bad
file never stops a run over thousands.

Stopping: the workers (a ``multiprocessing.Pool``, which can be terminated)
ignore SIGINT, so that Ctrl-C reaches only the parent, and ask the kernel to
send them SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), so that not even
a SIGKILLed parent leaves them behind (each holds a model, ~170 MB). While
the pool runs, SIGTERM to the parent raises ``SystemExit(143)``; either way the
parent terminates the pool on its way out.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
from tqdm import tqdm

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.enrollment import embed_speech
from vggvox.errors import VggvoxError
from vggvox.eval.cache import EmbeddingCache, content_key
from vggvox.modelcard import load_card

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """The outcome for one file: an embedding, or the reason there is none."""

    path: Path
    embedding: np.ndarray | None
    seconds: float = 0.0
    reason: str = ""

    @property
    def vector(self) -> np.ndarray:
        """The embedding of a file that has one (callers filter on ``embedding`` first)."""
        if self.embedding is None:
            raise ValueError(f"{self.path}: no embedding ({self.reason})")
        return self.embedding


@dataclass(frozen=True)
class JobSettings:
    card_path: Path
    max_seconds: float | None = None
    """Use at most this much of each file (VGGVox's max_sec), None for all."""
    threads: int = 1
    check_speech: bool = False
    """Enrollment: refuse a file the VAD finds too little speech in (vggvox.enrollment)."""


_worker: Embedder | None = None
"""A worker process's model (each worker loads its own)."""


PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent dies (Linux)."""


def worker_model() -> Embedder | None:
    """A pool worker's model (``worker_pool``); None before one is loaded."""
    return _worker


def load_worker_model(card_path: Path, threads: int) -> None:
    """Load this worker process's model (``worker_model``): a pool worker's setup, and
    a Ray worker's."""
    global _worker
    _worker = Embedder(load_card(card_path), threads=threads)


def _init_pool_worker(card_path: Path, threads: int) -> None:
    """A pool worker: Ctrl-C is the parent's to handle, and the worker dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM kills a worker outright. It inherits the parent's Python handler
    # (worker_pool's, raising SystemExit), under which a worker idle on the pool's
    # task queue was once seen to outlive pool.terminate() and hang the parent's join.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's terminate() on exit is the only guard
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
    load_worker_model(card_path, threads)


@contextmanager
def worker_pool(workers: int, card_path: Path,
                threads: int = 1) -> Iterator[multiprocessing.pool.Pool]:
    """Worker processes that end with this block, however it ends (an error, Ctrl-C,
    or SIGTERM, which exits 143 while the pool runs)."""
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if main else None
    pool = multiprocessing.get_context("fork").Pool(workers, _init_pool_worker,
                                                   (card_path, threads))
    try:
        yield pool
        pool.close()
    finally:
        pool.terminate()  # at once: a worker may be inside a long ONNX call
        pool.join()
        if main:
            signal.signal(signal.SIGTERM, previous)


def _embed_one(task: tuple[Path, JobSettings]) -> Embedded:
    path, settings = task
    embedder = _worker
    assert embedder is not None, "worker not initialised"
    try:
        x = load_audio(path)
        if settings.max_seconds:
            x = x[: int(settings.max_seconds * SAMPLE_RATE)]
        if settings.check_speech:
            clip = embed_speech(embedder, x)
            if clip.embedding is None:
                return Embedded(path, None, clip.speech_s,
                                f"too little speech: {clip.speech_s:.2f} s after VAD")
            return Embedded(path, clip.embedding, clip.speech_s)
        return Embedded(path, embedder.embed(x), len(x) / SAMPLE_RATE)
    except VggvoxError as e:
        reason = e.reason if hasattr(e, "reason") else str(e)
        return Embedded(path, None, reason=reason)


def file_size(path: Path) -> int:
    """A file's size in bytes for ordering work, 0 when it cannot be read (its worker
    reports why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the worker will report why the file is unusable


def _longest_first(tasks: Iterable[tuple[Path, JobSettings]]) -> list[tuple[Path, JobSettings]]:
    """Largest files first: the last ones handed out are short, so the workers end
    together instead of one finishing a long file alone (files are ~linear in time)."""
    return sorted(tasks, key=lambda task: file_size(task[0]), reverse=True)


@dataclass(frozen=True)
class Request:
    """Files to embed one way (``settings``), with the caches their vectors go in."""

    paths: list[Path]
    settings: JobSettings
    cache: EmbeddingCache | None = None
    also: EmbeddingCache | None = None
    """A second cache that the vectors computed here belong in too."""


def _not_cached(req: Request, done: dict[Path, Embedded], keys: dict[Path, str]) -> list[Path]:
    """The request's distinct paths that its cache does not hold; the hits go in
    ``done``, and the content key of each readable path in ``keys``."""
    todo = list(dict.fromkeys(req.paths))
    if req.cache is None:
        return todo
    for p in todo:
        try:
            keys[p] = content_key(p)
        except OSError:
            continue  # the worker will report why the file is unusable
        hit = req.cache.get(keys[p])
        if hit is not None:
            done[p] = Embedded(p, hit)
    todo = [p for p in todo if p not in done]
    log.info("cache: %d hits, %d to compute", len(done), len(todo))
    return todo


def embed_together(requests: list[Request], workers: int = 1,
                   progress: str = "", ray: str | None = None) -> list[dict[Path, Embedded]]:
    """Embed the distinct paths of each request once, all requests in one run over the
    workers (one model load each), longest files first: no worker waits for one list
    to end before the next begins. ``progress`` names a bar shown on a terminal.
    ``ray``: the address of a Ray cluster whose workers embed instead (``raybatch``);
    the caches are read and written here, as in a local run."""
    done: list[dict[Path, Embedded]] = [{} for _ in requests]
    keys: list[dict[Path, str]] = [{} for _ in requests]
    owner: dict[tuple[Path, JobSettings], list[int]] = {}
    """Each file to compute, once per way of embedding it -> the requests that want it."""
    for i, req in enumerate(requests):
        for p in _not_cached(req, done[i], keys[i]):
            owner.setdefault((p, req.settings), []).append(i)
    tasks = _longest_first(owner)
    cards = {(st.card_path, st.threads) for _, st in tasks}
    if len(cards) > 1:
        raise ValueError("embed_together: the requests name more than one model")

    bar = tqdm(total=len(tasks), desc=progress, unit="file",
               disable=not progress or not sys.stderr.isatty())

    def collect(results: Iterable[Embedded]) -> None:
        # Both map and Pool.imap give results in the order of the tasks.
        for task, r in zip(tasks, results, strict=True):
            for i in owner[task]:
                done[i][r.path] = r
                req = requests[i]
                if req.cache is not None and r.embedding is not None and r.path in keys[i]:
                    req.cache.put(keys[i][r.path], r.embedding)
                    if req.also is not None:
                        req.also.put(keys[i][r.path], r.embedding)
            bar.update()

    try:
        if ray is not None and tasks:
            from vggvox_client import raybatch

            collect(raybatch.ordered_map(ray, _embed_one, tasks, load_worker_model,
                                         cards.pop()))
        elif workers > 1 and len(tasks) >= 2:
            card_path, threads = cards.pop()
            with worker_pool(min(workers, len(tasks)), card_path, threads) as pool:
                # One file a task, in order: with the longest first, workers end together.
                collect(pool.imap(_embed_one, tasks))
        elif tasks:
            load_worker_model(*cards.pop())
            collect(map(_embed_one, tasks))
    finally:
        bar.close()
    return done


def embed_files(
    paths: Iterable[Path],
    settings: JobSettings,
    workers: int = 1,
    cache: EmbeddingCache | None = None,
    progress: str = "",
    also: EmbeddingCache | None = None,
    ray: str | None = None,
) -> dict[Path, Embedded]:
    """Embed each distinct path once (one request of ``embed_together``)."""
    return embed_together([Request(list(paths), settings, cache, also)], workers,
                          progress, ray)[0]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
