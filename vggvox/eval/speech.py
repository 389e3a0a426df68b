"""Where the speech is in an utterance: a plain energy rule, no model.

The conversation builder needs this twice: to trim each utterance's leading
and trailing silence (so that the gaps it draws are the real gaps), and to
mark pauses inside an utterance in the truth, so that the truth says who
speaks, not who holds the floor. An energy rule is enough on read speech and
is easy to state: 30 ms frames are speech when their level is above
max(-55 dBFS, loudest frame - 40 dB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggvox.audio import SAMPLE_RATE

FRAME_S = 0.03
FLOOR_DBFS = -55.0
RANGE_DB = 40.0
# Pauses this long or longer split the truth; shorter ones are part of the speech.
PAUSE_S = 0.5
# A burst shorter than this alone between pauses is a click or a breath, not speech.
MIN_BURST_S = 0.09


@dataclass(frozen=True)
class Clip:
    """A trimmed utterance: ``audio`` starts and ends with speech; ``spans`` are
    its speech stretches in samples of ``audio``, pauses of PAUSE_S or more apart."""

    audio: np.ndarray
    spans: tuple[tuple[int, int], ...]

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE


def frame_levels(x: np.ndarray, frame: int) -> np.ndarray:
    """Level in dBFS of each whole frame of ``frame`` samples."""
    n = x.size // frame
    if n == 0:
        return np.zeros(0)
    power = np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1)
    levels: np.ndarray = 10.0 * np.log10(np.maximum(power, 1e-20))
    return levels


def speech_spans(x: np.ndarray, rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Speech stretches of ``x`` in samples, split at pauses of PAUSE_S or more."""
    frame = round(FRAME_S * rate)
    levels = frame_levels(x, frame)
    if levels.size == 0:
        return []
    speech = np.flatnonzero(levels > max(FLOOR_DBFS, float(levels.max()) - RANGE_DB))
    if speech.size == 0:
        return []
    min_pause = int(np.ceil(PAUSE_S / FRAME_S - 1e-9))
    # A new run starts where at least min_pause silent frames precede a speech frame.
    breaks = np.flatnonzero(np.diff(speech) - 1 >= min_pause)
    starts = np.concatenate(([speech[0]], speech[breaks + 1]))
    ends = np.concatenate((speech[breaks], [speech[-1]])) + 1
    runs = [(int(a) * frame, int(b) * frame) for a, b in zip(starts, ends, strict=True)]
    kept = [r for r in runs if r[1] - r[0] >= MIN_BURST_S * rate]
    return kept or [max(runs, key=lambda r: r[1] - r[0])]


def make_clip(x: np.ndarray, level_dbfs: float | None, fade_s: float = 0.005) -> Clip | None:
    """Trim ``x`` to its speech, optionally set its speech level; None if no speech.

    The level is the RMS over the speech stretches, so pauses don't lower it;
    the gain is capped to keep peaks below full scale. Short fades at the cut
    ends keep the joins free of clicks.
    """
    spans = speech_spans(x)
    if not spans:
        return None
    a, b = spans[0][0], spans[-1][1]
    y = np.array(x[a:b], dtype=np.float32)
    rel = tuple((s - a, e - a) for s, e in spans)
    if level_dbfs is not None:
        speech = np.concatenate([y[s:e] for s, e in rel])
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
        peak = float(np.max(np.abs(y)))
        if rms > 0 and peak > 0:
            y *= min(10 ** (level_dbfs / 20) / rms, 0.99 / peak)
    n = min(round(fade_s * SAMPLE_RATE), y.size // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return Clip(y, rel)
