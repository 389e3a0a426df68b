"""Fitting and checking an open-set calibration (``vggvox.calibration``).

The evidence is what the turn decider really sees: each test utterance goes
through the streaming segmenter (VAD, 2 s windows every 0.5 s), its windows are
embedded, and runs of 1 to 32 consecutive windows within a speech segment are
summed and normalised, like a turn growing. Each run is scored against every
voiceprint.

The development speakers are split in two halves, ``fit`` and ``held``,
stratified by source (each source's speakers sorted by a hash of their name,
then alternated): the calibration sees only ``fit``; every figure that checks
it is measured on ``held``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from vggvox.audio import SAMPLE_RATE, load_audio, to_float, to_int16
from vggvox.calibration import Calibration
from vggvox.embedder import Embedder, l2_normalize
from vggvox.errors import VggvoxError
from vggvox.eval.lists import Utterance
from vggvox.stream.segmenter import Segmenter, Window
from vggvox.stream.vad import SpeechStart, VadConfig
from vggvox.stream.windows import WindowConfig
from vggvox.voiceprints import VoiceprintSet

RUNS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""Window counts of the evidence runs (a turn of k windows)."""
TAIL_RATES = (0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5)
"""Non-target tail probabilities the normal tail is fitted to (each needs 10 scores)."""
DURATION_EDGES = (1.0, 1.6, 2.2, 3.2, 5.0, 8.0, 60.0)
EXPONENTS = tuple(round(0.30 + 0.02 * i, 2) for i in range(46))
"""Candidate exponents for the number of enrolled speakers (0.30 .. 1.20)."""
_NORMAL = NormalDist()


def split_speakers(utterances: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``fit`` or ``held`` for each speaker of (speaker, source) pairs: half of each source."""
    by_source: dict[str, set[str]] = defaultdict(set)
    for speaker, source in utterances:
        by_source[source].add(speaker)
    out = {}
    for speakers in by_source.values():
        ordered = sorted(speakers, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
        for i, s in enumerate(ordered):
            out[s] = ("fit", "held")[i % 2]
    return out


@dataclass(frozen=True)
class EvidenceSet:
    embeddings: np.ndarray
    """(n, dim), unit length."""
    speech_s: np.ndarray
    speakers: np.ndarray

    def __len__(self) -> int:
        return len(self.speakers)


def gather(embedder: Embedder, utts: list[Utterance], vad: VadConfig | None = None,
           window: WindowConfig | None = None, runs: tuple[int, ...] = RUNS,
           progress: Callable[[int, int], None] | None = None,
           skip: Callable[[Utterance, VggvoxError], None] | None = None) -> EvidenceSet:
    """Turn-like evidence of every utterance: runs of consecutive windows' embeddings.
    An unreadable file stops the run, unless ``skip`` is given: it is told, and the
    file left out (a user's list, where one bad line should not cost the rest)."""
    embs: list[np.ndarray] = []
    secs: list[float] = []
    who: list[str] = []
    for n, u in enumerate(utts):
        seg = Segmenter(vad, window)
        segments: list[list[Window]] = []
        try:
            audio = to_int16(load_audio(u.path))
        except VggvoxError as err:
            if skip is None:
                raise
            skip(u, err)
            continue
        for item in seg.push(audio) + seg.finish():
            if isinstance(item, SpeechStart):
                segments.append([])
            elif isinstance(item, Window):
                segments[-1].append(item)
        wins = [w for s in segments for w in s]
        if wins:
            e = iter(embedder.embed_batch([to_float(w.samples) for w in wins]))
            for s in segments:
                vectors = np.stack([next(e) for _ in s]) if s else None
                for k in runs:
                    for j in range(0, len(s) - k + 1, k):
                        assert vectors is not None
                        embs.append(l2_normalize(vectors[j:j + k].sum(0)))
                        secs.append((s[j + k - 1].end - s[j].start) / SAMPLE_RATE)
                        who.append(u.speaker)
        if progress:
            progress(n + 1, len(utts))
    dim = embedder.card.embedding_size
    return EvidenceSet(np.stack(embs) if embs else np.zeros((0, dim), np.float32),
                       np.asarray(secs), np.asarray(who))


def _trials(ev: EvidenceSet, vps: VoiceprintSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine of every evidence against every voiceprint, and which are the same speaker."""
    snap = vps.snapshot()
    scores = ev.embeddings @ snap.matrix.T
    same = ev.speakers[:, None] == np.asarray(snap.names)[None, :]
    return scores, same, np.repeat(ev.speech_s[:, None], len(snap), axis=1)


def fit_tail(scores: np.ndarray, speech_s: np.ndarray) -> tuple[tuple[float, float],
                                                                   tuple[float, float]]:
    """Normal tail ``mean + sd * z`` (both linear in ln d) through the non-target quantiles."""
    rows, ys, ws = [], [], []
    for lo, hi in itertools.pairwise(DURATION_EDGES):
        sel = scores[(speech_s >= lo) & (speech_s < hi)]
        if not len(sel):
            continue
        ln_d = math.log(float(np.median(speech_s[(speech_s >= lo) & (speech_s < hi)])))
        for q in TAIL_RATES:
            if q * len(sel) < 10:
                continue
            z = _NORMAL.inv_cdf(1 - q)
            rows.append([1.0, ln_d, z, z * ln_d])
            ys.append(float(np.quantile(sel, 1 - q)))
            ws.append(math.sqrt(q * len(sel)))  # a quantile's precision grows with its count
    a, y, w = np.asarray(rows), np.asarray(ys), np.asarray(ws)
    if len(a) < 4:
        raise ValueError("too few non-target scores to fit a tail")
    c = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0]
    return (float(c[0]), float(c[1])), (float(c[2]), float(c[3]))


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[float, ...]:
    """Weighted logistic regression of y (0/1) on the columns of x.

    A handful of parameters and a convex loss: a few Newton steps in numpy do it,
    without taking on a machine-learning library for one fit.
    """
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        grad = x.T @ (weight * (p - y))
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return tuple(float(v) for v in w)


@dataclass(frozen=True)
class Draw:
    """One random enrollment: what every piece of evidence's best match is then."""

    n: int
    """Speakers enrolled."""
    best: np.ndarray
    """Each piece of evidence's best score among them."""
    who: np.ndarray
    """And whose it is."""
    stranger: np.ndarray
    """Whether the piece's speaker is not among them."""


def draws(ev: EvidenceSet, vps: VoiceprintSet, share: float, reps: int,
          rng: np.random.Generator) -> Iterator[Draw]:
    """``reps`` random enrollments of ``share`` of the voiceprints (skipping a draw of
    none or all of them): the open-set decisions each one leads to."""
    snap = vps.snapshot()
    names = np.asarray(snap.names)
    scores = ev.embeddings @ snap.matrix.T
    for _ in range(reps):
        chosen = rng.random(len(names)) < share
        if not chosen.any() or chosen.all():
            continue
        sub = scores[:, chosen]
        yield Draw(int(chosen.sum()), sub.max(1), names[chosen][sub.argmax(1)],
                   ~np.isin(ev.speakers, names[chosen]))


def decisions(ev: EvidenceSet, vps: VoiceprintSet, shares: tuple[float, ...] = (0.1, 0.3, 0.5,
              0.7, 0.9), reps: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    """Open-set decisions as the daemon makes them: random shares of the speakers
    enrolled, each piece of evidence's best score among them, and whether that best
    speaker is the one speaking. Weighted so that, in each draw, the strangers'
    evidence and the enrolled speakers' weigh the same (even prior odds)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = defaultdict(list)
    for share in shares:
        for d in draws(ev, vps, share, reps, rng):
            n_s, n_e = int(d.stranger.sum()), int((~d.stranger).sum())
            if not n_s or not n_e:
                continue
            cols["score"].append(d.best)
            cols["speech_s"].append(ev.speech_s)
            cols["n"].append(np.full(len(ev), d.n, float))
            cols["correct"].append(d.who == ev.speakers)
            cols["weight"].append(np.where(d.stranger, 0.5 / n_s, 0.5 / n_e))
    return {k: np.concatenate(v) for k, v in cols.items()}


def fit_confidence(d: dict[str, np.ndarray]) -> tuple[float, ...]:
    """P(best speaker is right) on (1, s, ln d, ln n, s ln d): the ``accept`` coefficients."""
    s, ln_d, ln_n = d["score"], np.log(d["speech_s"]), np.log(d["n"])
    x = np.stack([np.ones_like(s), s, ln_d, ln_n, s * ln_d], axis=1)
    return fit_logistic(x, d["correct"].astype(np.float64), d["weight"])


def open_set_rates(cal: Calibration, ev: EvidenceSet, vps: VoiceprintSet, false_accept: float,
                   reps: int = 20, enrolled_share: float = 0.5, seed: int = 0,
                   exponent: float | None = None) -> tuple[float, int, float]:
    """Strangers accepted, and enrolled speakers named right, at a setting.

    Each repetition enrolls a random share of the voiceprints; the evidence of
    everyone else is a stranger's. Returns (false-accept rate, stranger trials,
    share of the enrolled speakers' evidence named right).
    """
    if exponent is not None:
        cal = Calibration(**{**cal.__dict__, "exponent": exponent})
    durations, index = np.unique(ev.speech_s, return_inverse=True)
    rng = np.random.default_rng(seed)
    fa = strangers = right = enrolled = 0
    for d in draws(ev, vps, enrolled_share, reps, rng):
        # Spans take few distinct values (whole hops): one threshold for each.
        t = np.array([cal.threshold(false_accept, s, d.n) for s in durations])[index]
        fa += int((d.best[d.stranger] >= t[d.stranger]).sum())
        strangers += int(d.stranger.sum())
        ok = (d.best >= t) & (d.who == ev.speakers)
        right += int(ok[~d.stranger].sum())
        enrolled += int((~d.stranger).sum())
    return fa / max(1, strangers), strangers, right / max(1, enrolled)


def fit(ev: EvidenceSet, vps: VoiceprintSet, model: str, fitted_on: str,
        rates: tuple[float, ...] = (0.001, 0.01, 0.05)) -> Calibration:
    """A calibration from evidence and voiceprints of the same (fit) speakers."""
    scores, same, secs = _trials(ev, vps)
    mean, sd = fit_tail(scores[~same], secs[~same])
    accept = fit_confidence(decisions(ev, vps))
    cal = Calibration(model, fitted_on, float(ev.speech_s.min()), float(ev.speech_s.max()),
                      mean, sd, 1.0, (accept[0], accept[1], accept[2], accept[3], accept[4]))
    # The exponent: the one whose simulated open-set false-accept rates sit closest
    # (in log ratio) to the settings, over several shares of enrolled speakers.

    def error(g: float) -> float:
        total = 0.0
        for share in (0.1, 0.5, 0.9):
            for a in rates:
                measured, _, _ = open_set_rates(cal, ev, vps, a, reps=8,
                                                enrolled_share=share, exponent=g)
                total += math.log(max(measured, a / 10) / a) ** 2
        return total

    best = min(EXPONENTS, key=error)
    return Calibration(**{**cal.__dict__, "exponent": best})


def reliability(cal: Calibration, ev: EvidenceSet, vps: VoiceprintSet,
                edges: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
                ) -> list[dict[str, object]]:
    """Is the confidence a probability? Per band of confidence of the decisions
    (all of them, as ``decisions`` draws them): the mean confidence, and the
    weighted share whose best speaker was right."""
    d = decisions(ev, vps, seed=2)
    conf = np.array([cal.confidence(s, t, int(n))
                     for s, t, n in zip(d["score"], d["speech_s"], d["n"], strict=True)])
    rows = []
    for lo, hi in itertools.pairwise(edges):
        m = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        w = d["weight"][m]
        if w.sum() > 0:
            rows.append({"band": f"{lo:g}-{hi:g}", "pieces": int(m.sum()),
                         "mean_confidence": round(float((conf[m] * w).sum() / w.sum()), 4),
                         "right": round(float((d["correct"][m] * w).sum() / w.sum()), 4)})
    return rows
