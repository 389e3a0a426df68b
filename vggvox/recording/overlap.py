"""Overlapped speech, speech and speaker changes, from a speaker-segmentation model.

The model (pyannote's segmentation-3.0, ``weights/export_segmentation.py``) reads
10 s chunks and says, for each frame (a 16.9 ms step), which of up to 3 speakers
of that chunk speak, at most 2 at once: one powerset class per frame, decoded
here to a yes/no per local speaker. Speakers are local to a chunk (speaker 0 of
one chunk need not be speaker 0 of the next), so chunks are combined only by
what does not depend on who is who:

- per frame, how many speak: each chunk's count, averaged over the chunks that
  cover the frame and rounded (pyannote's "speaker count"); 1 or more is speech;
- per frame, the probability that two speak at once (the model's probability of
  the classes that name two speakers, averaged likewise): overlap where it
  reaches ``OVERLAP_THRESHOLD``. 0.5 would be about ``count >= 2``; 0.3 finds
  more of the overlap, mostly its quiet edges, for a little precision (measured
  by bench/bench_overlap.py, in docs/segmentation.md);
- within one chunk, where the set of speakers changes: a change point, kept
  where most of the chunks that see that instant agree.

Chunks overlap by ``chunk - step``: pyannote slides them by 1 s (10 % of a
chunk), the best and dearest; a longer step costs proportionally less (see
docs/segmentation.md for the measured trade-off). The frames at each end of a
chunk (the card's ``warm_up``) see little context and count only where no other
chunk covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vggvox.errors import ModelError
from vggvox.modelcard import SegmentationCard, load_segmentation_card, resolve_card

DEFAULT_MODEL = "segmentation-3.0"
DEFAULT_STEP_S = 5.0
"""Chunk step: half pyannote's cost at 2.5 s and a fifth of it at its 1 s, for the same
overlap figures (docs/segmentation.md); each instant is seen by 1 or 2 chunks' middles."""
BATCH = 8
"""Chunks per onnxruntime call: the LSTMs run as matrix products over a batch,
and 8 chunks keep the activations near 60 MB."""
OVERLAP_THRESHOLD = 0.3
CHANGE_TOLERANCE_S = 0.25
"""Change points from several chunks this close together are one change."""
_EDGE_WEIGHT = 1e-3  # a warm-up frame's weight: it counts only where nothing else does


Regions = list[tuple[float, float]]


@dataclass(frozen=True)
class FrameActivity:
    """What the model found in one recording, frame by frame."""

    step_s: float
    """Frame step (the frames' centres are ``times``)."""
    first_s: float
    """Centre of frame 0."""
    count: np.ndarray
    """(frames,) uint8: how many speakers are active in each frame of the recording."""
    overlap: np.ndarray
    """(frames,) float: the probability that two speakers speak at once in each frame."""
    local: np.ndarray
    """(chunks, frames per chunk, local speakers) bool: each chunk's decoded output."""
    chunk_frames: np.ndarray
    """(chunks,) int: the recording frame each chunk's first frame falls on."""
    valid: np.ndarray
    """(chunks, frames per chunk) bool: frames outside the chunk's warm-up (or at the
    recording's ends), whose change points are trusted."""

    @property
    def times(self) -> np.ndarray:
        """(frames,) the centre of each frame, in seconds."""
        return self.first_s + self.step_s * np.arange(len(self.count))

    def overlaps(self, min_s: float = 0.1, gap_s: float = 0.1,
                 threshold: float = OVERLAP_THRESHOLD) -> Regions:
        """Stretches where 2 speakers speak at once (``overlap`` >= ``threshold``)."""
        return self.regions(self.overlap >= threshold, min_s, gap_s)

    def speech(self, min_s: float = 0.1, gap_s: float = 0.1) -> Regions:
        """Stretches where at least one speaker speaks."""
        return self.regions(self.count >= 1, min_s, gap_s)

    def regions(self, mask: np.ndarray, min_s: float, gap_s: float) -> Regions:
        """Runs of True frames as (start, end) seconds: gaps under ``gap_s`` bridged,
        then runs under ``min_s`` dropped."""
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        half = self.step_s / 2
        runs: Regions = []
        for a, b in zip(self.times[starts] - half, self.times[ends] + half, strict=True):
            if runs and a - runs[-1][1] < gap_s:
                runs[-1] = (runs[-1][0], float(b))
            else:
                runs.append((float(a), float(b)))
        return [(max(0.0, a), b) for a, b in runs if b - a >= min_s]

    def changes(self, min_run_s: float = 0.1) -> list[float]:
        """Speaker change points (seconds): where a chunk's set of active speakers
        becomes another set (a pause between them bridged, the change put in its
        middle), ignoring sets that last under ``min_run_s``, and kept where at
        least half of the chunks that see that instant found it."""
        min_run = max(1, round(min_run_s / self.step_s))
        found = [(self.chunk_frames[k] + f, k) for k in range(len(self.local))
                 for f in _chunk_changes(self.local[k], self.valid[k], min_run)]
        if not found:
            return []
        frames = np.array([f for f, _ in found])
        chunks = np.array([k for _, k in found])
        order = np.argsort(frames, kind="stable")
        frames, chunks = frames[order], chunks[order]
        tolerance = CHANGE_TOLERANCE_S / self.step_s
        groups = np.split(np.arange(len(frames)), np.flatnonzero(np.diff(frames) > tolerance) + 1)
        seen_by = self._coverage()
        out = []
        for g in groups:
            at = float(np.median(frames[g]))
            covering = seen_by[min(len(seen_by) - 1, round(at))]
            if 2 * len(set(chunks[g].tolist())) >= covering:
                out.append(self.first_s + self.step_s * at)
        return [t for t in out if t <= self.first_s + self.step_s * len(self.count)]

    def _coverage(self) -> np.ndarray:
        """How many chunks' trusted frames cover each recording frame."""
        index = self.chunk_frames[:, None] + np.arange(self.local.shape[1])
        return np.bincount(index[self.valid], minlength=int(index.max()) + 1)


def _chunk_changes(local: np.ndarray, valid: np.ndarray, min_run: int) -> list[float]:
    """One chunk's change points, as (fractional) chunk frames."""
    code = local.astype(np.int64) @ (1 << np.arange(local.shape[1]))  # each set as a number
    code = np.where(valid, code, -1)  # the warm-up is neither speech nor pause
    bounds = np.flatnonzero(np.diff(code)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(code)]])
    runs = [(s, e, code[s]) for s, e in zip(starts, ends, strict=True)
            if code[s] > 0 and e - s >= min_run]
    changes = []
    for (_, end, before), (start, _, after) in pairwise(runs):
        if before != after and not np.any(code[end:start] < 0):
            changes.append((end + start) / 2)
    return changes


class Segmentation:
    """A speaker-segmentation model over whole recordings (float32, 16 kHz, mono)."""

    def __init__(self, card: SegmentationCard, threads: int = 1,
                 step_s: float = DEFAULT_STEP_S) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.card = card
        hop = round(card.frame_step_s * card.sample_rate)
        # A step of whole frames puts every chunk's frames on the recording's frame grid.
        self.step_frames = max(1, round(step_s / card.frame_step_s))
        self.step_samples = self.step_frames * hop
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(card.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises several unrelated types
            raise ModelError(f"{card.path}: onnxruntime cannot load it: {e}") from None
        self.mapping = np.zeros((len(card.powerset), card.max_speakers_per_chunk), bool)
        for c, speakers in enumerate(card.powerset):
            self.mapping[c, list(speakers)] = True

    @classmethod
    def from_card(cls, model: str | Path = DEFAULT_MODEL, threads: int = 1,
                  step_s: float = DEFAULT_STEP_S) -> Segmentation:
        """A shipped model by name, or any segmentation model by its card's path."""
        return cls(load_segmentation_card(resolve_card(model)), threads=threads, step_s=step_s)

    @property
    def step_s(self) -> float:
        return self.step_samples / self.card.sample_rate

    def log_probs(self, chunks: np.ndarray) -> np.ndarray:
        """(chunks, samples) -> (chunks, frames, classes): one onnxruntime call."""
        batch = np.ascontiguousarray(chunks, np.float32)[:, None, :]
        return self.session.run([self.card.output_name], {self.card.input_name: batch})[0]

    def decode(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each frame of each chunk: the set of local speakers its most likely class
        names, (chunks, frames, local speakers) bool, and the probability of the
        classes of two speakers, (chunks, frames)."""
        chunks = self.chunks(audio)
        pairs = self.mapping.sum(1) >= 2
        local, overlap = [], []
        for i in range(0, len(chunks), BATCH):
            lp = self.log_probs(chunks[i:i + BATCH])
            local.append(self.mapping[lp.argmax(-1)])
            overlap.append(np.exp(lp[..., pairs]).sum(-1))
        return np.concatenate(local), np.concatenate(overlap)

    def chunks(self, audio: np.ndarray) -> np.ndarray:
        """The recording as chunks every ``step_samples``, the last one padded with zeros
        (a strided view: a batch is copied only when it is run)."""
        size = self.card.chunk_samples
        n = 1 + -(-max(0, len(audio) - size) // self.step_samples)
        padded = np.zeros((n - 1) * self.step_samples + size, np.float32)
        padded[: len(audio)] = audio
        return np.lib.stride_tricks.sliding_window_view(padded, size)[:: self.step_samples]

    def activity(self, audio: np.ndarray) -> FrameActivity:
        """Run the model over a whole recording and combine its chunks."""
        card = self.card
        audio = np.asarray(audio, np.float32).reshape(-1)
        first_s = card.frame_start_s + card.frame_duration_s / 2
        frames = max(0, int(np.ceil((len(audio) / card.sample_rate - first_s)
                                    / card.frame_step_s)))
        if frames == 0:
            empty = np.zeros((0, card.frames), bool)
            return FrameActivity(card.frame_step_s, first_s, np.zeros(0, np.uint8),
                                 np.zeros(0, np.float32),
                                 np.zeros((0, card.frames, card.max_speakers_per_chunk), bool),
                                 np.zeros(0, np.int64), empty)
        local, overlap = self.decode(audio)
        starts = self.step_frames * np.arange(len(local))
        valid = self._trusted(len(local))
        weight = np.where(valid, 1.0, _EDGE_WEIGHT)
        index = (starts[:, None] + np.arange(card.frames)).ravel()
        norm = np.bincount(index, weights=np.broadcast_to(weight, local.shape[:2]).ravel())

        def mean(per_chunk: np.ndarray) -> np.ndarray:
            """Each recording frame's weighted mean over the chunks that cover it."""
            return (np.bincount(index, weights=(weight * per_chunk).ravel()) / norm)[:frames]

        count = np.rint(mean(local.sum(-1))).astype(np.uint8)
        return FrameActivity(card.frame_step_s, first_s, count,
                             mean(overlap).astype(np.float32), local, starts, valid)

    def _trusted(self, chunks: int) -> np.ndarray:
        """(chunks, frames) outside each chunk's warm-up, except at the recording's ends."""
        edge = round(self.card.warm_up * self.card.frames)
        valid = np.ones((chunks, self.card.frames), bool)
        if edge > 0:
            valid[1:, :edge] = False
            valid[:-1, -edge:] = False
        return valid

    def overlaps(self, audio: np.ndarray, min_s: float = 0.1, gap_s: float = 0.1,
                 threshold: float = OVERLAP_THRESHOLD) -> Regions:
        """Stretches where 2 speakers speak at once, (start, end) seconds."""
        return self.activity(audio).overlaps(min_s, gap_s, threshold)

    def speech(self, audio: np.ndarray, min_s: float = 0.1, gap_s: float = 0.1) -> Regions:
        """Stretches where at least one speaker speaks."""
        return self.activity(audio).speech(min_s, gap_s)

    def changes(self, audio: np.ndarray, min_run_s: float = 0.1) -> list[float]:
        """Speaker change points in seconds (``FrameActivity.changes``)."""
        return self.activity(audio).changes(min_run_s)
