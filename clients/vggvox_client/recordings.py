"""Many recordings through the in-process identify pipeline: workers, cache, progress.

Each worker process holds its own model and a ``RecordingIdentifier`` over the
same voiceprints; recordings are handed out longest first, one at a time, and
each comes back as a ``RecordingResult`` or the one-line reason it has none.
The voiceprints and settings reach the workers by ``fork`` (they are set in
this module before the pool starts), not through a pipe.

The cache keeps each recording's window embeddings, keyed by the audio's bytes,
the model file and the settings that place the windows (VAD and window
sizes): a rerun with other voiceprints, another rule or re-clustering settings
embeds nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tqdm import tqdm

from vggvox.audio import load_audio
from vggvox.calibration import AcceptRule
from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.eval.cache import EmbeddingCache, content_key
from vggvox.modelcard import ModelCard
from vggvox.provisional import HeardVoice, ProvisionalVoices
from vggvox.recording.identify import IdentifyConfig, OverlapFinder, RecordingIdentifier
from vggvox.recording.segments import RecordingResult
from vggvox.storeopen import open_store
from vggvox.stream.recognizer import merge_rule
from vggvox.voiceprints import VoiceprintSet
from vggvox_client.jobs import file_size, load_worker_model, worker_model, worker_pool


@dataclass(frozen=True)
class Outcome:
    path: Path
    result: RecordingResult | None
    reason: str = ""


@dataclass(frozen=True)
class Job:
    card: ModelCard
    card_path: Path
    voiceprints: VoiceprintSet
    config: IdentifyConfig
    cache_dir: Path | None = None
    overlap_model: str | None = None
    """The segmentation model that marks overlapped speech (None: not marked). Each
    process loads its own: an ONNX Runtime session is not carried across a fork."""
    embedder: Embedder | None = None
    """The model already loaded in this process, for a run without workers."""


_job: Job | None = None
"""This run's job: set before the workers fork, so that they share it."""
_identifier: RecordingIdentifier | None = None
"""This process's identifier (each worker builds its own, on its own model)."""


def _overlap_finder(job: Job) -> OverlapFinder | None:
    if job.overlap_model is None:
        return None
    from vggvox.recording.overlap import Segmentation

    return Segmentation.from_card(job.overlap_model)


def cache_for(job: Job) -> EmbeddingCache | None:
    if job.cache_dir is None:
        return None
    rc = job.config.recognizer
    # The settings that decide where the windows fall (and so what each embeds).
    placing = json.dumps([asdict(rc.vad), asdict(rc.window)], sort_keys=True)
    tag = "windows-" + hashlib.sha256(placing.encode()).hexdigest()[:12]
    return EmbeddingCache(job.cache_dir, job.card.sha256, tag)


def _identify_one(path: Path) -> Outcome:
    global _identifier
    job = _job
    assert job is not None, "no job set"
    if _identifier is None:  # a worker's first recording: on the worker's own model
        model = worker_model()
        assert model is not None, "not a worker"
        _identifier = RecordingIdentifier(model, job.voiceprints, job.config,
                                          _overlap_finder(job))
    try:
        audio = load_audio(path)
        cache = cache_for(job)
        key = content_key(path) if cache is not None else ""
        cached = cache.get(key) if cache is not None else None
        try:
            result, wp = _identifier.run(audio, path, cached)
        except ValueError:  # a stale or damaged entry: embed again, and replace it
            cached = None
            result, wp = _identifier.run(audio, path)
        if cache is not None and cached is None and len(wp.embeddings):
            cache.put(key, wp.embeddings)
        if cached is not None:  # its speed is not the model's: say why
            result = replace(result, extra={**result.extra, "cached": True})
        return Outcome(path, result)
    except VggvoxError as e:
        return Outcome(path, None, getattr(e, "reason", str(e)))
    except OSError as e:
        return Outcome(path, None, f"cannot read: {e.strerror or e}")


@dataclass(frozen=True)
class Memory:
    """``--remember``: each recording's unknown voices matched with, and kept as, the
    store's provisional voices, in the order of the recordings (in this process, after
    the workers: the next recording must find the voices of the one before)."""

    voices: ProvisionalVoices
    rule: AcceptRule

    @classmethod
    def open(cls, job: Job, where: str | Path) -> Memory:
        store = open_store(where)
        if store.read_only is not None:
            raise VggvoxError(f"--remember: {store.location} cannot be written: "
                              f"{store.read_only}")
        return cls(ProvisionalVoices(store, job.card), merge_rule(job.card, job.config.recognizer))

    def remember(self, result: RecordingResult) -> RecordingResult:
        heard = [HeardVoice(v.total, v.windows, v.speech_s, v.start, v.end)
                 for v in result.unknown_voices]
        if not heard:
            return result
        # Where it was heard, by absolute path: two folders' meeting.wav are two recordings.
        where = str(Path(result.path).resolve())
        if any(p.recording == where for v in self.voices.list() for p in v.places):
            # Heard before: its voices are recognised, not added again (that would count
            # the same speech twice); only a voice not matched now is new.
            matched = self.voices.match([h.centroid for h in heard],
                                        [h.speech_s for h in heard], self.rule)
            new = [h for h, m in zip(heard, matched, strict=True) if m is None]
            fresh = iter(self.voices.remember(where, new, self.rule) if new else [])
            labels = [m if m is not None else next(fresh) for m in matched]
        else:
            labels = self.voices.remember(where, heard, self.rule)
        result = replace(result, extra={**result.extra,
                                        "remembered": self.voices.store.location})
        return result.relabelled({v.label: new for v, new in
                                  zip(result.unknown_voices, labels, strict=True)})


def _ray_worker(job: Job) -> None:
    """A Ray worker's setup (``raybatch``): this run's job, and a model of its own
    with one thread, as a pool worker's."""
    global _job, _identifier
    load_worker_model(job.card_path, 1)
    _job, _identifier = job, None


def _in_order(order: list[int], outs: Iterable[Outcome], bar: tqdm) -> Iterator[Outcome]:
    """Outcomes that come back in ``order`` (longest first), given back in the paths'."""
    done: dict[int, Outcome] = {}
    nxt = 0
    for i, out in zip(order, outs, strict=True):
        done[i] = out
        bar.update()
        while nxt in done:
            yield done.pop(nxt)
            nxt += 1


def identify_files(paths: Sequence[Path], job: Job, workers: int = 1,
                   progress: bool = False, ray: str | None = None) -> Iterable[Outcome]:
    """Outcomes in the order of ``paths`` (each path once), as they are ready; on the
    Ray cluster at ``ray`` where given (``raybatch``), else here or over ``workers``."""
    global _job, _identifier
    _job, _identifier = job, None
    todo = list(dict.fromkeys(paths))
    order = sorted(range(len(todo)), key=lambda i: file_size(todo[i]), reverse=True)
    bar = tqdm(total=len(todo), desc="identify", unit="file",
               disable=not progress or not sys.stderr.isatty())
    try:
        if ray is not None and todo:
            from vggvox_client import raybatch

            # The model loaded here stays here: each worker loads its own.
            shipped = replace(job, embedder=None)
            yield from _in_order(order, raybatch.ordered_map(
                ray, _identify_one, [todo[i] for i in order], _ray_worker, (shipped,)), bar)
        elif workers > 1 and len(todo) > 1:
            with worker_pool(min(workers, len(todo)), job.card_path) as pool:
                yield from _in_order(
                    order, pool.imap(_identify_one, [todo[i] for i in order]), bar)
        else:
            _identifier = RecordingIdentifier(job.embedder or Embedder(job.card),
                                              job.voiceprints, job.config, _overlap_finder(job))
            for path in todo:
                out = _identify_one(path)
                bar.update()
                yield out
    finally:
        bar.close()
        _job, _identifier = None, None
