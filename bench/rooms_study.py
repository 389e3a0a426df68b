"""Open-set false accepts per room, and the estimators that adapt the rule to one (issue 22).

    .venv/bin/python bench/rooms_study.py [--model campplus-int8] [--false-accept 0.005]
        [--cache ~/.cache/vggvox-rooms] [--n0 10] [--tail 0.2] [--min-n 10] [--scale]
        [--grid] [--warm "warm (a)+(b)"] [--json]

About 35 s on 2 shared cores the first time (825 clips embedded), seconds after;
``--grid`` adds about 25 s. Findings and the choice of estimator: docs/rooms.md.

A *room* is one source of the development speech (same microphones, acoustics,
often the same words); the rooms studied are the sources with at least 6
speakers, plus LibriSpeech's two sources together and the mixture of all.
Whole utterances, in-process (no daemon): each utterance of enroll_list.csv
and test_list.csv is embedded once with the model (1 ONNX thread; cached in
``--cache`` keyed by path, so reruns take seconds).

Per room the speakers are split by a sha1 of their name (sorted, alternate)
into enrolled and strangers; the enrolled get a voiceprint from their
enroll_list.csv clips. A test utterance is decided by its best score against
the voiceprints and the calibrated cutoff ``AcceptRule.cutoff(duration, n)``.

1. **Baseline** (all test utterances, shipped calibration): strangers'
   utterances named, enrolled utterances named right, and the best single
   threshold for the room: its right at stranger FA <= the setting.
2. **Estimators.** The room's test utterances are split by a sha1 of their
   path (sorted, alternate) into a *heard* half and an *evaluation* half. An
   estimator turns stranger-score evidence into a shift of the shipped
   stranger tail (in units of its sd at each duration, never negative, so the
   rule is never looser than shipped). Evidence:

   a. ``enrolled``: each enrolled speaker's enrollment clips scored against the
      OTHER voiceprints (known at enrollment: "cold");
   b. ``named``: heard utterances that the cold rule names with confidence
      >= 0.99, scored against the other n-1 voiceprints;
   c. ``unknown``: heard utterances the cold rule names nobody, scored against
      all n voiceprints;
   d. ``snorm``: score normalisation against the room's cohort (other
      voiceprints' and unknown voices' scores), with a threshold chosen on
      the shipped rule's z scale (kept as a comparison, not an adapted rule).

   Cold = (a); warm = (a) plus (b) and/or (c) from the heard half. Each room
   is measured in 4 folds (either half of its speakers enrolled, either half of
   its test utterances heard) and the evaluation halves pooled: no figure is
   measured on an utterance that fed its estimator. Besides the setting, the
   strangers' rate is also shown at the looser setting 0.05, where the small
   rooms have enough strangers' utterances to see whether the rule holds.

``--grid`` also prints the constants' sweep (n0, tail share, minimum evidence).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.calibration import AcceptRule, Calibration
from vggvox.modelcard import load_card, resolve_card
from vggvox.scoring import voiceprint

SPEECH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech"
if not SPEECH.is_dir():
    SPEECH = Path("/work/shared/data/speech")
MIN_SPEAKERS = 6
CONFIDENT = 0.99
"""Confidence at which a named utterance's other scores count as stranger evidence (b)."""
_NORMAL = NormalDist()


def sha(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()


# -- data ---------------------------------------------------------------------------------

@dataclass
class Clip:
    path: str
    speaker: str
    source: str
    seconds: float
    emb: np.ndarray = field(repr=False)


def read_list(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (SPEECH / name).read_text().splitlines():
        if line.strip():
            p, s = line.split()
            out.append((p, s))
    return out


def embed_all(model: str, cache: Path) -> tuple[list[Clip], list[Clip], Calibration]:
    """Every enroll and test clip, embedded whole (cached by path)."""
    card = load_card(resolve_card(model))
    if card.calibration is None:
        raise SystemExit(f"{model} has no calibration")
    source = {r["path"]: r["source"] for r in csv.DictReader(open(SPEECH / "manifest.csv"))}
    enroll, test = read_list("enroll_list.csv"), read_list("test_list.csv")
    cache.mkdir(parents=True, exist_ok=True)
    cfile = cache / f"{model}.npz"
    known: dict[str, tuple[np.ndarray, float]] = {}
    if cfile.is_file():
        z = np.load(cfile)
        known = {str(p): (e, float(d)) for p, e, d in zip(z["paths"], z["emb"], z["secs"],
                                                            strict=True)}
    todo = sorted({p for p, _ in enroll + test} - set(known))
    if todo:
        from vggvox.embedder import Embedder

        emb = Embedder(card, threads=1)
        t0 = time.monotonic()
        for i, p in enumerate(todo):
            x = load_audio(SPEECH / p)
            known[p] = (emb.embed(x), len(x) / SAMPLE_RATE)
            if (i + 1) % 50 == 0 or i + 1 == len(todo):
                print(f"  embedded {i + 1}/{len(todo)} ({time.monotonic() - t0:.0f} s)",
                      file=sys.stderr)
        paths = sorted(known)
        np.savez(cfile, paths=np.asarray(paths), emb=np.stack([known[p][0] for p in paths]),
                 secs=np.asarray([known[p][1] for p in paths]))

    def clips(rows: list[tuple[str, str]]) -> list[Clip]:
        return [Clip(p, s, source[p], known[p][1], known[p][0]) for p, s in rows]

    return clips(enroll), clips(test), card.calibration


@dataclass
class Room:
    name: str
    enrolled: list[str]
    strangers: list[str]
    voiceprints: np.ndarray
    enroll: list[Clip]
    """The enrolled speakers' enrollment clips."""
    test: list[Clip]


def split_half(items: list[str]) -> tuple[list[str], list[str]]:
    ordered = sorted(items, key=sha)
    return ordered[0::2], ordered[1::2]


def make_rooms(enroll: list[Clip], test: list[Clip], flip: bool = False) -> list[Room]:
    """The rooms, with the first sha1 half enrolled (``flip``: the second)."""
    speakers: dict[str, set[str]] = defaultdict(set)
    for c in enroll + test:
        speakers[c.source].add(c.speaker)
    split: dict[str, bool] = {}
    for spk in speakers.values():
        a, _ = split_half(list(spk))
        for s in spk:
            split[s] = (s in a) != flip
    groups = {src: [src] for src in sorted(speakers, key=lambda s: -len(speakers[s]))
              if len(speakers[src]) >= MIN_SPEAKERS}
    groups["librispeech (both)"] = [s for s in speakers if s.startswith("librispeech")]
    groups["mixture (all)"] = sorted(speakers)
    rooms = []
    for name, sources in groups.items():
        spk = sorted(s for src in sources for s in speakers[src])
        enrolled = [s for s in spk if split[s]]
        clips = [c for c in enroll if c.speaker in enrolled]
        vps = np.stack([voiceprint(np.stack([c.emb for c in clips if c.speaker == s]))
                        for s in enrolled])
        rooms.append(Room(name, enrolled, [s for s in spk if not split[s]], vps, clips,
                          [c for c in test if c.source in sources]))
    return rooms


# -- the estimator (pure functions: what would move into the library) ----------------------

@dataclass(frozen=True)
class TailAdjust:
    """A room's stranger tail relative to the shipped one, in the shipped tail's z units:
    a stranger's z = (score - mean(d)) / sd(d) has its upper tail at ``mu + sigma * z0``
    where the shipped calibration puts it at ``z0``. (0, 1) is the shipped rule."""

    mu: float = 0.0
    sigma: float = 1.0
    evidence: int = 0

    def shift(self, z_cut: float) -> float:
        """How far (in sd(d)) to raise a cutoff that sits at ``z_cut``; never negative."""
        return max(0.0, self.mu + (self.sigma - 1.0) * z_cut)


def tail_mean_sd(cal: Calibration, secs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ln_d = np.log(np.clip(secs, cal.min_speech_s, cal.max_speech_s))
    mean = cal.nontarget_mean[0] + cal.nontarget_mean[1] * ln_d
    sd = np.maximum(cal.nontarget_sd[0] + cal.nontarget_sd[1] * ln_d, 1e-3)
    return mean, sd


def standardise(cal: Calibration, scores: np.ndarray, secs: np.ndarray) -> np.ndarray:
    """Stranger scores as z against the shipped tail at each score's duration."""
    mean, sd = tail_mean_sd(cal, secs)
    return (scores - mean) / sd


def z_cutoff(cal: Calibration, false_accept: float, n_enrolled: int) -> float:
    """The shipped cutoff's z (the same at every duration)."""
    chances = max(1, n_enrolled) ** cal.exponent
    q = -math.expm1(math.log1p(-false_accept) / chances)
    return -_NORMAL.inv_cdf(q)


def fit_tail_adjust(z: np.ndarray, n0: float, tail: float, min_n: int,
                    scale: bool = False) -> TailAdjust:
    """Shrunken tail shift (and optionally scale) from stranger evidence ``z``.

    The top ``tail`` share of the sorted z are set against the standard normal
    quantiles at their plotting positions (Hazen, (i - 0.5) / n): the shift is
    their mean difference (with ``scale``, a least-squares line through them).
    With fewer than ``min_n`` scores nothing moves; otherwise the estimate is
    shrunk toward the shipped (0, 1) with weight n / (n + n0)."""
    n = len(z)
    if n < min_n:
        return TailAdjust(evidence=n)
    top = np.sort(z)[::-1][:max(2, math.ceil(tail * n))]
    p = (np.arange(1, len(top) + 1) - 0.5) / n
    expected = np.asarray([_NORMAL.inv_cdf(1.0 - v) for v in p])
    w = n / (n + n0)
    if scale and len(top) >= 4 and np.ptp(expected) > 0:
        sigma, mu = np.polyfit(expected, top, 1)
        sigma = float(np.clip(sigma, 0.5, 2.0))
        return TailAdjust(w * float(mu), 1.0 + w * (sigma - 1.0), n)
    return TailAdjust(w * float(np.mean(top - expected)), 1.0, n)


def cutoffs(cal: Calibration, false_accept: float, secs: np.ndarray, n_enrolled: int,
            adjust: TailAdjust = TailAdjust()) -> np.ndarray:
    """The adapted rule's cutoff for each duration: shipped cutoff + shift * sd(d)."""
    rule = AcceptRule(false_accept=false_accept, calibration=cal)
    base = np.asarray([rule.cutoff(float(d), n_enrolled) for d in secs])
    _, sd = tail_mean_sd(cal, secs)
    return base + adjust.shift(z_cutoff(cal, false_accept, n_enrolled)) * sd


# -- evidence ------------------------------------------------------------------------------

def enrolled_evidence(room: Room) -> tuple[np.ndarray, np.ndarray]:
    """(a) each enrolled speaker's enrollment clips against the OTHER voiceprints."""
    scores, secs = [], []
    for c in room.enroll:
        i = room.enrolled.index(c.speaker)
        s = np.delete(room.voiceprints @ c.emb, i)
        scores.append(s)
        secs.append(np.full(len(s), c.seconds))
    return np.concatenate(scores), np.concatenate(secs)


def heard_evidence(room: Room, heard: list[Clip], cal: Calibration, false_accept: float,
                   adjust: TailAdjust) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """(b) and (c) from the heard half, as the rule ``adjust`` decides it: (scores, secs, utts)."""
    n = len(room.enrolled)
    emb = np.stack([c.emb for c in heard])
    secs = np.asarray([c.seconds for c in heard])
    sc = emb @ room.voiceprints.T
    best = sc.argmax(1)
    top = sc[np.arange(len(heard)), best]
    named = top >= cutoffs(cal, false_accept, secs, n, adjust)
    conf = np.asarray([cal.confidence(float(s), float(d), n) for s, d in zip(top, secs,
                                                                               strict=True)])
    out: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    sel = np.flatnonzero(named & (conf >= CONFIDENT))
    b = [np.delete(sc[i], best[i]) for i in sel]
    out["named"] = (np.concatenate(b) if b else np.zeros(0),
                    np.repeat(secs[sel], n - 1), len(sel))
    sel = np.flatnonzero(~named)
    out["unknown"] = (sc[sel].ravel(), np.repeat(secs[sel], n), len(sel))
    return out


# -- figures -------------------------------------------------------------------------------

def decide(room: Room, clips: list[Clip], cal: Calibration, false_accept: float,
           adjust: TailAdjust = TailAdjust()) -> dict[str, np.ndarray]:
    """Each clip's best score, whether the rule names it, whether it is an enrolled
    speaker's, and whether the best voiceprint is theirs."""
    emb = np.stack([c.emb for c in clips])
    secs = np.asarray([c.seconds for c in clips])
    sc = emb @ room.voiceprints.T
    best = sc.argmax(1)
    top = sc[np.arange(len(clips)), best]
    return {"top": top,
            "named": top >= cutoffs(cal, false_accept, secs, len(room.enrolled), adjust),
            "enrolled": np.asarray([c.speaker in room.enrolled for c in clips]),
            "correct": np.asarray([c.speaker == room.enrolled[b]
                                   for c, b in zip(clips, best, strict=True)])}


def figures(d: dict[str, np.ndarray], false_accept: float) -> dict[str, Any]:
    """Strangers' utterances named, enrolled named right, and the best single threshold
    (one fixed cosine for all the decisions pooled in ``d``)."""
    top, named, enrolled, correct = d["top"], d["named"], d["enrolled"], d["correct"]
    fa = float(named[~enrolled].mean()) if (~enrolled).any() else 0.0

    def oracle(target: float) -> float:
        s = np.sort(top[~enrolled])[::-1]
        k = math.floor(target * len(s) + 1e-9)
        t = s[k] if k < len(s) else -np.inf
        return float((correct & (top > t))[enrolled].mean())

    return {"strangers": int((~enrolled).sum()), "strangers_named": fa,
            "enrolled": int(enrolled.sum()),
            "enrolled_right": float((named & correct)[enrolled].mean()),
            "oracle_setting": oracle(false_accept),
            "oracle_measured": oracle(max(fa, false_accept))}


def pool(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def cohort_snorm(room: Room, heard: list[Clip], clips: list[Clip], cal: Calibration,
                 false_accept: float, top_k: int = 50) -> dict[str, np.ndarray]:
    """(d) adaptive S-norm against the room's cohort (other voiceprints + unknown voices
    of the heard half, as the shipped rule decides them), accepted where the normalised
    score passes the shipped rule's z cutoff for this n (the normal tail's own quantile)."""
    n = len(room.enrolled)
    hs = np.stack([c.emb for c in heard])
    hsec = np.asarray([c.seconds for c in heard])
    hsc = hs @ room.voiceprints.T
    htop = hsc.max(1)
    unknown = hs[htop < cutoffs(cal, false_accept, hsec, n)]
    cohort = np.concatenate([room.voiceprints, unknown]) if len(unknown) else room.voiceprints
    emb = np.stack([c.emb for c in clips])
    sc = emb @ room.voiceprints.T

    def stats(x: np.ndarray, skip: int | None) -> tuple[float, float]:
        s = x @ cohort.T
        if skip is not None:
            s = np.delete(s, skip)
        s = np.sort(s)[::-1][:top_k]
        return float(s.mean()), float(max(s.std(), 1e-3))

    vstats = [stats(v, i) for i, v in enumerate(room.voiceprints)]
    norm = np.empty_like(sc)
    for q in range(len(clips)):
        tm, ts = stats(emb[q], None)
        for j in range(n):
            vm, vs = vstats[j]
            norm[q, j] = 0.5 * ((sc[q, j] - vm) / vs + (sc[q, j] - tm) / ts)
    best = norm.argmax(1)
    top = norm[np.arange(len(clips)), best]
    return {"top": top, "named": top >= z_cutoff(cal, false_accept, n),
            "enrolled": np.asarray([c.speaker in room.enrolled for c in clips]),
            "correct": np.asarray([c.speaker == room.enrolled[b]
                                   for c, b in zip(clips, best, strict=True)])}


# -- the study -----------------------------------------------------------------------------

DEV_ROOMS = ("librispeech-train-clean-100-halves", "librispeech-test-other", "ami", "fsdd",
             "mixture (all)")


@dataclass(frozen=True)
class Constants:
    n0: float
    tail: float
    min_n: int
    scale: bool = False

    def fit(self, z: np.ndarray) -> TailAdjust:
        return fit_tail_adjust(z, self.n0, self.tail, self.min_n, self.scale)


RULES = ("shipped", "cold (a)", "warm (a)+(b)", "warm (a)+(c)", "warm (a)+(b)+(c)")


def fold(room: Room, heard: list[Clip], ev: list[Clip], cal: Calibration, fa: float,
         k: Constants, snorm: bool) -> dict[str, tuple[TailAdjust, int, dict[str, np.ndarray]]]:
    """One room, one heard half: each rule's adjustment, evidence utterances, decisions."""
    a_s, a_d = enrolled_evidence(room)
    za = standardise(cal, a_s, a_d)
    cold = k.fit(za)
    hv = heard_evidence(room, heard, cal, fa, cold)
    zb = standardise(cal, hv["named"][0], hv["named"][1])
    zc = standardise(cal, hv["unknown"][0], hv["unknown"][1])
    ne, nb, nc = len(room.enroll), hv["named"][2], hv["unknown"][2]
    adj = {"shipped": (TailAdjust(), 0), "cold (a)": (cold, ne),
           "warm (a)+(b)": (k.fit(np.concatenate([za, zb])), ne + nb),
           "warm (a)+(c)": (k.fit(np.concatenate([za, zc])), ne + nc),
           "warm (a)+(b)+(c)": (k.fit(np.concatenate([za, zb, zc])), ne + nb + nc)}
    out = {label: (t, u, decide(room, ev, cal, fa, t)) for label, (t, u) in adj.items()}
    if snorm:
        d = cohort_snorm(room, heard, ev, cal, fa)
        out["(d) S-norm, room cohort"] = (TailAdjust(), 0, d)
    return out


def room_rows(pair: tuple[Room, Room], cal: Calibration, fa: float, k: Constants,
              snorm: bool = False) -> list[dict[str, Any]]:
    """Each rule of one room, pooled over 4 folds: either half of the speakers enrolled,
    either half of the test utterances heard (the other half scores the figures)."""
    parts: dict[str, list[tuple[TailAdjust, int, dict[str, np.ndarray]]]] = defaultdict(list)
    for room in pair:
        h1, h2 = split_half([c.path for c in room.test])
        for heard_paths in (set(h1), set(h2)):
            heard = [c for c in room.test if c.path in heard_paths]
            ev = [c for c in room.test if c.path not in heard_paths]
            for label, v in fold(room, heard, ev, cal, fa, k, snorm).items():
                parts[label].append(v)
    rows = []
    for label, v in parts.items():
        zcuts = [z_cutoff(cal, fa, len(r.enrolled)) for r in pair for _ in (0, 1)]
        rows.append({"room": pair[0].name, "rule": label,
                     "evidence_scores": round(float(np.mean([t.evidence for t, _, _ in v]))),
                     "evidence_utts": round(float(np.mean([u for _, u, _ in v]))),
                     "shift_sd": float(np.mean([t.shift(z) for (t, _, _), z
                                                in zip(v, zcuts, strict=True)])),
                     "shifts": [round(t.shift(z), 2) for (t, _, _), z in zip(v, zcuts,
                                                                              strict=True)],
                     **figures(pool([d for _, _, d in v]), fa)})
    return rows


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def print_baseline(pairs: list[tuple[Room, Room]], cal: Calibration,
                   fa: float) -> list[dict[str, Any]]:
    print(f"\n## Baseline: shipped calibration, false_accept {fa}, all test utterances, "
          "either half enrolled (pooled)\n")
    print("| room | speakers | strangers' utts named | enrolled named right "
          "| best one threshold (FA <= setting) | strangers named at setting 0.05 |")
    print("|---|---|---|---|---|---|")
    out = []
    for pair in pairs:
        r = figures(pool([decide(room, room.test, cal, fa) for room in pair]), fa)
        r5 = figures(pool([decide(room, room.test, cal, 0.05) for room in pair]), 0.05)
        spk = len(pair[0].enrolled) + len(pair[0].strangers)
        print(f"| {pair[0].name} | {spk} | {pct(r['strangers_named'])} of {r['strangers']} "
              f"| {pct(r['enrolled_right'])} of {r['enrolled']} | {pct(r['oracle_setting'])} "
              f"| {pct(r5['strangers_named'])} |")
        out.append({"room": pair[0].name, **r, "strangers_named_at_0.05": r5["strangers_named"]})
    return out


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| room | rule | evidence per fold (scores / utts) | shift (sd) | strangers named "
          "| enrolled right | best one threshold: FA<=setting / at measured FA "
          "| strangers named at setting 0.05 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        k = round(r["strangers_named"] * r["strangers"])
        print(f"| {r['room']} | {r['rule']} | {r['evidence_scores']} / {r['evidence_utts']} "
              f"| {r['shift_sd']:.2f} | {pct(r['strangers_named'])} ({k}/{r['strangers']}) "
              f"| {pct(r['enrolled_right'])} | {pct(r['oracle_setting'])} / "
              f"{pct(r['oracle_measured'])} | {pct(r['strangers_named_at_0.05'])} |")


def grid(pairs: list[tuple[Room, Room]], cal: Calibration, fa: float, warm: str) -> None:
    """The constants' sweep: the targets' worst cases for each setting."""
    print(f"\n## Constants sweep (evaluation halves pooled; warm = {warm})\n")
    print("| scale | n0 | tail | min_n | FSDD cold FA | worst warm FA (dev rooms) "
          "| worst warm right - best threshold | mixture warm FA / right "
          "| worst warm FA at setting 0.05 |")
    print("|---|---|---|---|---|---|---|---|---|")
    dev = [p for p in pairs if p[0].name in DEV_ROOMS]
    for scale in (False, True):
        for n0 in (0, 5, 10, 20, 40):
            for tail in (0.5, 0.2, 0.1):
                for min_n in (10, 20):
                    k = Constants(n0, tail, min_n, scale)
                    per = {p[0].name: {r["rule"]: r for r in room_rows(p, cal, fa, k)}
                           for p in dev}
                    fsdd = per["fsdd"]["cold (a)"]["strangers_named"]
                    warm_rows = [rows[warm] for rows in per.values()]
                    worst_fa = max(w["strangers_named"] for w in warm_rows)
                    worst_gap = min(w["enrolled_right"] - w["oracle_setting"] for w in warm_rows)
                    mix = per["mixture (all)"][warm]
                    fa5 = max(r["strangers_named"] for p in dev
                              for r in room_rows(p, cal, 0.05, k) if r["rule"] == warm)
                    print(f"| {scale} | {n0} | {tail} | {min_n} | {pct(fsdd)} | {pct(worst_fa)} "
                          f"| {100 * worst_gap:+.1f} | {pct(mix['strangers_named'])} / "
                          f"{pct(mix['enrolled_right'])} | {pct(fa5)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="campplus-int8")
    ap.add_argument("--false-accept", type=float, default=0.005)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "vggvox-rooms")
    ap.add_argument("--n0", type=float, default=10.0)
    ap.add_argument("--tail", type=float, default=0.2)
    ap.add_argument("--min-n", type=int, default=10)
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--grid", action="store_true", help="also sweep the constants")
    ap.add_argument("--warm", default="warm (a)+(b)", choices=RULES[2:],
                    help="the warm rule the sweep summarises")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.monotonic()
    enroll, test, cal = embed_all(args.model, args.cache)
    pairs = list(zip(make_rooms(enroll, test), make_rooms(enroll, test, flip=True),
                     strict=True))
    fa = args.false_accept
    base = print_baseline(pairs, cal, fa)
    k = Constants(args.n0, args.tail, args.min_n, args.scale)
    print(f"\n## Per estimator: evaluation halves pooled over 4 folds; n0 {k.n0:g}, "
          f"tail {k.tail:g}, min_n {k.min_n}, scale {k.scale}\n")
    rows = []
    for pair in pairs:
        at5 = {r["rule"]: r["strangers_named"]
               for r in room_rows(pair, cal, 0.05, k, snorm=True)}
        for r in room_rows(pair, cal, fa, k, snorm=True):
            rows.append({**r, "strangers_named_at_0.05": at5.get(r["rule"], float("nan"))})
    print_rows(rows)
    if args.grid:
        grid(pairs, cal, fa, args.warm)
    print(f"\n({time.monotonic() - t0:.0f} s)")
    if args.json:
        print(json.dumps({"baseline": base, "rows": rows}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
