"""Embedding many files: in-process or over worker processes, with an optional cache.

Every failure is caught per file and returned as a reason, so that one bad
file never stops a run over thousands.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.cache import EmbeddingCache, content_key
from vggvox.embedder import Embedder
from vggvox.enrollment import embed_speech
from vggvox.errors import VggvoxError
from vggvox.modelcard import load_card

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    """The outcome for one file: an embedding, or the reason there is none."""

    path: Path
    embedding: np.ndarray | None
    seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class JobSettings:
    card_path: Path
    max_seconds: float | None = None
    """Use at most this much of each file (VGGVox's max_sec), None for all."""
    threads: int = 1
    check_speech: bool = False
    """Enrollment: refuse a file the VAD finds too little speech in (vggvox.enrollment)."""


_worker: tuple[Embedder, JobSettings] | None = None


def _init_worker(settings: JobSettings) -> None:
    global _worker
    _worker = (Embedder(load_card(settings.card_path), threads=settings.threads), settings)


def _embed_one(path: Path) -> Embedded:
    assert _worker is not None, "worker not initialised"
    embedder, settings = _worker
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


def embed_files(
    paths: Iterable[Path],
    settings: JobSettings,
    workers: int = 1,
    cache: EmbeddingCache | None = None,
    progress: str = "",
) -> dict[Path, Embedded]:
    """Embed each distinct path once. ``progress`` names a bar shown on a terminal."""
    todo = list(dict.fromkeys(paths))
    done: dict[Path, Embedded] = {}
    keys: dict[Path, str] = {}
    if cache is not None:
        for p in todo:
            try:
                keys[p] = content_key(p)
            except OSError:
                continue  # the worker will report why the file is unusable
            hit = cache.get(keys[p])
            if hit is not None:
                done[p] = Embedded(p, hit)
        todo = [p for p in todo if p not in done]
        log.info("cache: %d hits, %d to compute", len(done), len(todo))

    bar = tqdm(total=len(todo), desc=progress, unit="file",
               disable=not progress or not sys.stderr.isatty())
    if workers <= 1 or len(todo) < 2:
        _init_worker(settings)
        results: Iterable[Embedded] = map(_embed_one, todo)
        pool = None
    else:
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), initializer=_init_worker, initargs=(settings,)
        )
        results = pool.map(_embed_one, todo, chunksize=4)
    try:
        for r in results:
            done[r.path] = r
            if cache is not None and r.embedding is not None and r.path in keys:
                cache.put(keys[r.path], r.embedding)
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return done


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
