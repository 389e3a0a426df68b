"""Data and measuring helpers for bench/bench_search.py: real CAM++ embeddings, padding.

- ``real_embeddings`` embeds the enrollment and test utterances of
  shared/data/speech (enroll_list.csv, test_list.csv) whole, plus up to two
  2 s windows cut from each test file (what the streaming recognizer scores),
  and caches the result in ~/.cache/vggvox-bench/ keyed by the model's sha256.
- ``build_database`` makes N voiceprints: the real enrolled speakers'
  voiceprints (scoring.voiceprint of their enrollment embeddings) at random
  rows among synthetic ones drawn from a Gaussian fitted to the real enrolled
  embeddings (mean and shrunk covariance), then L2-normalised.
- A fifth of the speakers are held out as strangers: never enrolled, their test
  utterances and windows become open-set queries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from benchkit import SPEECH

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder, l2_normalize
from vggvox.eval.lists import read_utterances
from vggvox.modelcard import load_card, resolve_card
from vggvox.scoring import voiceprint

CACHE = Path.home() / ".cache" / "vggvox-bench"
WINDOW_S = 2.0
STRANGER_EVERY = 5  # every 5th speaker (sorted by name) is held out as a stranger


@dataclass
class Real:
    """Real embeddings: enrollment utterances, whole test utterances, 2 s test windows."""

    enroll: np.ndarray
    enroll_spk: np.ndarray
    test: np.ndarray
    test_spk: np.ndarray
    win: np.ndarray
    win_spk: np.ndarray


@dataclass
class Queries:
    vectors: np.ndarray  # (Q, D) float32, unit length
    kind: np.ndarray  # "utt" or "win2s"
    speaker: np.ndarray
    stranger: np.ndarray  # bool: speaker never enrolled


@dataclass
class Database:
    vectors: np.ndarray  # (N, D) float32, unit length, C-contiguous
    real_rows: np.ndarray  # rows holding real voiceprints
    real_names: list[str]


def _windows(x: np.ndarray) -> list[np.ndarray]:
    """Up to two 2 s windows at 20% and 60% of the file (one, centred, if it is short)."""
    n, w = len(x), int(WINDOW_S * SAMPLE_RATE)
    if n < w:
        return []
    if n < 2 * w + SAMPLE_RATE:
        start = (n - w) // 2
        return [x[start : start + w]]
    return [x[int(f * n) : int(f * n) + w] for f in (0.2, 0.6) if int(f * n) + w <= n]


def _embed_all(model: str, threads: int) -> Real:
    emb = Embedder.from_card(model, threads=threads)
    enroll, _ = read_utterances(SPEECH / "enroll_list.csv")
    test, _ = read_utterances(SPEECH / "test_list.csv")
    e = np.stack([emb.embed(load_audio(u.path)) for u in enroll])
    t_rows, w_rows, w_spk = [], [], []
    for u in test:
        x = load_audio(u.path)
        t_rows.append(emb.embed(x))
        wins = _windows(x)
        if wins:
            w_rows.append(emb.embed_batch(wins))
            w_spk += [u.speaker] * len(wins)
    return Real(
        enroll=e,
        enroll_spk=np.array([u.speaker for u in enroll]),
        test=np.stack(t_rows),
        test_spk=np.array([u.speaker for u in test]),
        win=np.concatenate(w_rows),
        win_spk=np.array(w_spk),
    )


def real_embeddings(model: str = "campplus", threads: int = 2) -> Real:
    """The real embeddings, from the cache when the model and lists are unchanged."""
    card = load_card(resolve_card(model))
    lists = b"".join((SPEECH / n).read_bytes() for n in ("enroll_list.csv", "test_list.csv"))
    key = hashlib.sha256(card.sha256.encode() + lists).hexdigest()[:16]
    path = CACHE / f"search_{card.name}_{key}.npz"
    if path.exists():
        with np.load(path) as z:
            return Real(**{k: z[k] for k in z.files})
    real = _embed_all(model, threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **real.__dict__)
    return real


def split(real: Real) -> tuple[dict[str, np.ndarray], Queries]:
    """Enrolled voiceprints (by name) and the queries, strangers held out."""
    speakers = sorted(set(real.enroll_spk))
    strangers = set(speakers[STRANGER_EVERY - 1 :: STRANGER_EVERY])
    prints = {
        s: voiceprint(real.enroll[real.enroll_spk == s]) for s in speakers if s not in strangers
    }
    vec = np.concatenate([real.test, real.win])
    spk = np.concatenate([real.test_spk, real.win_spk])
    kind = np.array(["utt"] * len(real.test) + ["win2s"] * len(real.win))
    return prints, Queries(vec, kind, spk, np.isin(spk, list(strangers)))


def fit_gaussian(real: Real, prints: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and a Cholesky factor of the enrolled embeddings' covariance.

    Fitted on the enrolled speakers' enrollment embeddings only (no query leaks
    in). ~260 samples in 192 dimensions give a poorly conditioned estimate, so
    the covariance is shrunk 10% towards its mean variance times the identity.
    """
    x = real.enroll[np.isin(real.enroll_spk, list(prints))].astype(np.float64)
    mu = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    cov = 0.9 * cov + 0.1 * np.trace(cov) / len(mu) * np.eye(len(mu))
    return mu, np.linalg.cholesky(cov)


def build_database(
    n: int, prints: dict[str, np.ndarray], gauss: tuple[np.ndarray, np.ndarray], seed: int = 0
) -> Database:
    """n voiceprints: the real ones at random rows, the rest synthetic."""
    rng = np.random.default_rng(seed)
    mu, chol = gauss
    names = list(prints)
    out = np.empty((n, len(mu)), dtype=np.float32)
    for a in range(0, n, 100_000):  # in blocks: no (n, D) float64 temporary
        b = min(n, a + 100_000)
        z = rng.standard_normal((b - a, len(mu)))
        out[a:b] = l2_normalize(mu + z @ chol.T)
    rows = rng.choice(n, size=len(names), replace=False)
    out[rows] = np.stack([prints[s] for s in names])
    return Database(out, rows, names)


def exact_top1(db: np.ndarray, q: np.ndarray, block: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact best row and score for each query (the ground truth), blockwise."""
    best = np.full(len(q), -1, dtype=np.int64)
    score = np.full(len(q), -np.inf, dtype=np.float32)
    for a in range(0, len(db), block):
        s = q @ db[a : a + block].T
        i = s.argmax(axis=1)
        v = s[np.arange(len(q)), i]
        better = v > score
        best[better], score[better] = i[better] + a, v[better]
    return best, score


def distribution_check(prints: dict[str, np.ndarray], gauss: tuple, qs: Queries, seed: int) -> str:
    """Strangers' cosine scores against real and against synthetic voiceprints:
    if the padding is drawn from the right distribution, the two should match."""
    sample = build_database(20_000, prints, gauss, seed=seed + 1)
    synth = np.delete(sample.vectors, sample.real_rows, axis=0)
    lines = []
    for label, m in (("real voiceprints", np.stack(list(prints.values()))), ("synthetic", synth)):
        s = qs.vectors[qs.stranger] @ m.T
        lines.append(
            f"   strangers' queries vs {label}: cosine mean {s.mean():.3f}, sd {s.std():.3f}, "
            f"max per query (median) {np.median(s.max(axis=1)):.3f} over {len(m):,}"
        )
    return "\n".join(lines)


def proc_kb(name: str) -> int:
    """A /proc/self/status figure in kB (VmRSS, VmHWM): no psutil needed."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """Reset VmHWM so that it measures the next build's peak (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def time_queries(fn: Callable[[np.ndarray], int], q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best row per query and ms per query, one query at a time (a decision's latency)."""
    best = np.empty(len(q), dtype=np.int64)
    ms = np.empty(len(q))
    for i in range(len(q)):
        t = time.perf_counter()
        best[i] = fn(q[i])
        ms[i] = (time.perf_counter() - t) * 1e3
    return best, ms


def p50_p95(ms: np.ndarray) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 95))


def recalls(got: np.ndarray, truth: np.ndarray, stranger: np.ndarray) -> tuple[float, float, float]:
    """recall@1 against exact search: all queries, enrolled speakers', strangers'."""
    hit = got == truth
    return float(hit.mean()), float(hit[~stranger].mean()), float(hit[stranger].mean())
