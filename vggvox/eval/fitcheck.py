"""Fit a calibration on one half of the speakers, check it on the other, write it.

The steps that ``weights/calibrate_shipped.py`` (the shipped calibrations, on the
development speech) and ``vggvox-client calibrate`` (a user's own recordings)
share, so that both files are fitted and checked the same way: enroll a half's
speakers, gather its turn-like evidence (``vggvox.eval.calibration_fit.gather``), fit
on ``fit``, and measure on ``held`` the false-accept rate against the setting,
per share of speakers enrolled, per length of speech, and the confidence's
reliability.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from vggvox.calibration import Calibration
from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.eval.calibration_fit import (
    DURATION_EDGES,
    EvidenceSet,
    fit,
    gather,
    open_set_rates,
    reliability,
    split_speakers,
)
from vggvox.eval.engine import enroll_utterances
from vggvox.eval.lists import Utterance
from vggvox.stream.vad import VadConfig
from vggvox.voiceprints import VoiceprintSet

SETTINGS = (0.001, 0.01, 0.05)
"""False-accept settings the check measures."""
SHARES = (0.1, 0.5, 0.9)
"""Shares of the held speakers enrolled in the check's draws."""
DURATIONS = ((1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 60.0))
"""Lengths of speech (s) of the check at 1 %."""
TAIL_SCORES = 1000
"""Stranger scores ``fit_tail`` needs in one length of speech to use the 1 % quantile
besides the 3 % one (10 scores beyond each); it needs two such lengths to fit a mean
and a spread that both change with the length."""

Say = Callable[[str], None]


@dataclass
class Half:
    """One half's speakers: their voiceprints and the evidence of their test recordings."""

    voiceprints: VoiceprintSet
    evidence: EvidenceSet
    problems: list[str] = field(default_factory=list)
    """One line per recording or speaker left out (unreadable, too little speech)."""


def gather_half(embedder: Embedder, enroll_utts: list[Utterance], test_utts: list[Utterance],
                where: str, vad: VadConfig | None = None) -> Half:
    """Enroll one half and gather its evidence; a recording that cannot be read is left
    out with a line saying so. (The recordings of a speaker who could not be enrolled
    stay: they are a stranger's, in every draw.)"""
    enrolled = enroll_utterances(embedder, enroll_utts, where, vad)
    problems = enrolled.problems

    def skip(u: Utterance, err: VggvoxError) -> None:
        problems.append(f"{where}:{u.line}: {err}")

    return Half(enrolled.voiceprints, gather(embedder, test_utts, vad, skip=skip), problems)


def tail_counts(half: Half) -> list[int]:
    """Stranger scores (evidence against another speaker's voiceprint) per length of
    speech, in ``fit_tail``'s bins: what the tail fit has to work with."""
    ev = half.evidence
    names = half.voiceprints.snapshot().names
    per_piece = len(names) - np.isin(ev.speakers, names).astype(int)
    return [int(per_piece[(ev.speech_s >= lo) & (ev.speech_s < hi)].sum())
            for lo, hi in itertools.pairwise(DURATION_EDGES)]


def tail_shortfall(half: Half) -> float:
    """How many times more stranger scores the tail fit needs (1.0 or less: enough)."""
    best = sorted(tail_counts(half), reverse=True)[:2]
    return TAIL_SCORES / max(1, min(best)) if len(best) == 2 else float("inf")


def check_table(cal: Calibration, half: Half, say: Say, shares: tuple[float, ...] = SHARES
                ) -> list[dict[str, object]]:
    """The false-accept rate measured against each setting, per share enrolled."""
    ev, vps = half.evidence, half.voiceprints
    rows: list[dict[str, object]] = []
    for share in shares:
        for a in SETTINGS:
            fa, n, right = open_set_rates(cal, ev, vps, a, reps=20, enrolled_share=share)
            rows.append({"enrolled_share": share, "setting": a, "measured": round(fa, 5),
                         "ratio": round(fa / a, 2), "stranger_trials": n,
                         "enrolled_right": round(right, 4)})
            say(f"  enrolled {share:.0%} of {len(vps)}: setting {a:.3%}  measured {fa:.3%} "
                f"({fa / a:.2f}x, {n} stranger trials)  enrolled right {right:.2%}")
    return rows


def check_by_duration(cal: Calibration, half: Half, say: Say) -> list[dict[str, object]]:
    """The false-accept rate at 1 %, half the speakers enrolled, per length of evidence."""
    ev = half.evidence
    rows: list[dict[str, object]] = []
    for lo, hi in DURATIONS:
        m = (ev.speech_s >= lo) & (ev.speech_s < hi)
        part = EvidenceSet(ev.embeddings[m], ev.speech_s[m], ev.speakers[m])
        fa, n, right = open_set_rates(cal, part, half.voiceprints, 0.01, reps=20,
                                      enrolled_share=0.5)
        rows.append({"speech_s": f"{lo:g}-{hi:g}", "setting": 0.01, "measured": round(fa, 5),
                     "ratio": round(fa / 0.01, 2), "stranger_trials": n,
                     "enrolled_right": round(right, 4)})
        say(f"  {lo:g}-{hi:g} s of speech: setting 1.000%  measured {fa:.3%} ({fa / 0.01:.2f}x,"
            f" {n} stranger trials)  enrolled right {right:.2%}")
    return rows


def check_confidence(cal: Calibration, half: Half, say: Say) -> list[dict[str, object]]:
    rows = reliability(cal, half.evidence, half.voiceprints)
    for r in rows:
        say(f"  confidence {r['band']}: mean {r['mean_confidence']:.3f}, "
            f"right {r['right']:.3f} ({r['pieces']} decisions)")
    return rows


def fit_and_check(fit_half: Half, held_half: Half, model: str, fitted_on: str, say: Say
                  ) -> tuple[Calibration, dict[str, list[dict[str, object]]]]:
    """The calibration fitted on ``fit_half``, and its check on ``held_half`` (the tables
    a calibration file records under ``check``)."""
    cal = fit(fit_half.evidence, fit_half.voiceprints, model, fitted_on)
    say(f"  exponent {cal.exponent}, tail mean {cal.nontarget_mean}, sd {cal.nontarget_sd}, "
        f"accept {cal.accept}")
    say(f"checking on {len(held_half.voiceprints)} held-apart speakers")
    checks = {"check": check_table(cal, held_half, say),
              "check_by_speech_s": check_by_duration(cal, held_half, say),
              "check_confidence": check_confidence(cal, held_half, say)}
    return cal, checks


def write_calibration(cal: Calibration, checks: dict[str, list[dict[str, object]]],
                      path: Path, header: str) -> None:
    """The calibration, then its checks (informative: the loader reads only the fit)."""
    cal.save(path, header)
    with path.open("a") as f:
        f.write(yaml.safe_dump(checks, sort_keys=False, width=88))


MIN_SPEAKERS = 6
"""A user's list needs this many speakers: three for each half, so that every draw of
the fit and of the check has both enrolled speakers and strangers."""
MIN_RECORDINGS = 2
"""And each speaker this many recordings: one (or more) to enroll, one to test."""


def split_recordings(utts: list[Utterance]) -> dict[str, tuple[list[Utterance],
                                                               list[Utterance]]]:
    """A user's recordings as ``fit`` and ``held`` halves of (enroll, test): the speakers
    split by ``split_speakers`` (a hash of the name: the same list gives the same halves),
    each speaker's first third of recordings in list order (at least one) enrolling them
    and the rest tested. Speakers with fewer than MIN_RECORDINGS are left out."""
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    usable = {s: us for s, us in by_speaker.items() if len(us) >= MIN_RECORDINGS}
    fold = split_speakers((s, "") for s in usable)
    out: dict[str, tuple[list[Utterance], list[Utterance]]] = {"fit": ([], []),
                                                                "held": ([], [])}
    for speaker, us in usable.items():
        k = max(1, len(us) // 3)
        out[fold[speaker]][0].extend(us[:k])
        out[fold[speaker]][1].extend(us[k:])
    return out


def too_little(utts: list[Utterance]) -> str | None:
    """Why a user's list cannot be calibrated on (before any embedding), or None."""
    counts: dict[str, int] = {}
    for u in utts:
        counts[u.speaker] = counts.get(u.speaker, 0) + 1
    usable = sum(n >= MIN_RECORDINGS for n in counts.values())
    if usable >= MIN_SPEAKERS:
        return None
    return (f"too little data: {usable} speaker(s) with at least {MIN_RECORDINGS} recordings "
            f"(of {len(counts)}); calibrating needs at least {MIN_SPEAKERS} speakers with "
            f"{MIN_RECORDINGS} or more recordings each (half to fit, half to check), and "
            f"enough speech for {TAIL_SCORES} stranger scores in each of two lengths of "
            "speech (roughly: (a half's speakers - 1) x its seconds of speech >= 1000)")
