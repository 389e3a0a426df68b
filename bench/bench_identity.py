"""The same-voice check of enrollment (vggvox/admission.py): how many genuine clips it
refuses and how many strangers' clips it lets through, per false-accept rate.

    .venv/bin/python bench/bench_identity.py [--rates 0.01,0.02,0.05,0.1,0.2] [--part held]

Speakers: the ``held`` half of the development speech (weights/calibrate_shipped.py's
split: the calibration never heard them). Every utterance is embedded as
enrollment embeds it (VAD-checked, the whole clip), with CAM++. Cutoffs come
from admission.same_voice_rule at each rate, for one voiceprint and each clip's
seconds of speech.

- **append** (a clip added to an enrolled speaker): each speaker's ``enroll``
  utterances (split.csv) make their voiceprint. Their other utterances are
  genuine appended clips: *refused* is the share below the cutoff. Every other
  speaker's utterances are strangers' clips: *accepted* is the share at or above
  it (issue 8's attack: 20 of an attacker's clips appended to one speaker).
- **within** (one enrollment of 3 clips): 3 utterances of one speaker (genuine:
  *refused* if any clip fails against the other two), and 2 of one speaker with
  1 of another (*missed* if the intruding clip passes), 20 draws per speaker
  with 3 or more utterances, seed 0.

Measured (about a minute on 2 cores), held speakers: 139, utterances 461;
append: 298 genuine and 41,124 stranger clips; within: 280 + 280 enrollments::

    rate   append: genuine refused  stranger accepted | within: genuine refused  intruder missed
    0.01                     0.67%              1.02% |                  7.14%            0.36%
    0.02                     0.67%              1.76% |                  7.14%            0.71%
    0.05                     0.67%              4.54% |                  0.00%            3.93%
    0.1                      0.34%             10.43% |                  0.00%           11.43%
    0.2                      0.00%             25.01% |                  0.00%           25.00%

The genuine clips refused are all AMI (far-field meeting turns: 2 of 10); the
within refusals at 1-2 % are one AMI speaker's 0.9 s clip. ``--part fit`` (the
speakers the calibration was fitted on) gives 0.33 % / 5.42 % / 0 % / 4.00 % at 0.05.
vggvox/admission.py uses 0.05.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict

import numpy as np
from benchkit import SPEECH

from vggvox import admission
from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.enrollment import Enrollment, embed_speech
from vggvox.eval.calibration_fit import split_speakers
from vggvox.modelcard import ModelCard
from vggvox.scoring import voiceprint

DRAWS = 20


def embed_all(embedder: Embedder, part: str) -> list[tuple[str, str, str, np.ndarray, float]]:
    """(speaker, source, split, embedding, speech s) of each usable utterance of ``part``."""
    rows = list(csv.DictReader((SPEECH / "manifest.csv").open()))
    split = {r["path"]: r["split"] for r in csv.DictReader((SPEECH / "split.csv").open())}
    fold = split_speakers((r["speaker"], r["source"]) for r in rows)
    out = []
    for r in rows:
        if part != "all" and fold[r["speaker"]] != part:
            continue
        c = embed_speech(embedder, load_audio(SPEECH / r["path"]))
        if c.embedding is not None:
            out.append((r["speaker"], r["source"], split.get(r["path"], "spare"),
                        c.embedding, c.speech_s))
    return out


def append_trials(utts: list) -> tuple[np.ndarray, ...]:
    """(scores, seconds, genuine?, source) of every test clip against every speaker's
    voiceprint."""
    by = defaultdict(list)
    for spk, _, sp, emb, _ in utts:
        if sp == "enroll":
            by[spk].append(emb)
    names = sorted(by)
    prints = np.stack([voiceprint(np.stack(by[n])) for n in names])
    tests = [(spk, emb, sec) for spk, _, sp, emb, sec in utts if sp != "enroll" and spk in by]
    emb = np.stack([t[1] for t in tests])
    scores = emb @ prints.T
    genuine = np.array([[t[0] == n for n in names] for t in tests])
    seconds = np.repeat(np.array([t[2] for t in tests])[:, None], len(names), axis=1)
    sources = {spk: src for spk, src, *_ in utts}
    source = np.array([sources[t[0]] for t in tests])
    return scores, seconds, genuine, np.repeat(source[:, None], len(names), axis=1)


def within_draws(utts: list, rng: np.random.Generator) -> tuple[list, list]:
    """Genuine 3-clip enrollments and 2+1 ones (the intruder last)."""
    by = defaultdict(list)
    for spk, _, _, emb, sec in utts:
        by[spk].append((emb, sec))
    many = [s for s in sorted(by) if len(by[s]) >= 3]
    genuine, mixed = [], []
    for s in many:
        others = [o for o in sorted(by) if o != s]
        for _ in range(DRAWS):
            idx = rng.choice(len(by[s]), 3, replace=False)
            genuine.append([by[s][i] for i in idx])
            o = others[rng.integers(len(others))]
            mixed.append([by[s][i] for i in idx[:2]] + [by[o][rng.integers(len(by[o]))]])
    return genuine, mixed


def odd_clips(card: ModelCard, clips: list, rate: float) -> list[bool]:
    """Which clips of one enrollment fail the within-enrollment check at ``rate``."""
    e = Enrollment("x", np.stack([c[0] for c in clips]), [f"c{i}" for i in range(len(clips))],
                   [c[1] for c in clips], 0.0)
    return [not s.ok for s in admission.check_voices(card, e, None, rate).scores]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="0.01,0.02,0.05,0.1,0.2")
    ap.add_argument("--part", choices=["held", "fit", "all"], default="held")
    args = ap.parse_args()
    if not (SPEECH / "manifest.csv").exists():
        print(f"no speech data at {SPEECH}", file=sys.stderr)
        return 1
    embedder = Embedder.from_card("campplus", threads=2)
    card = embedder.card
    utts = embed_all(embedder, args.part)
    scores, seconds, genuine, source = append_trials(utts)
    genuine_sets, mixed_sets = within_draws(utts, np.random.default_rng(0))
    print(f"{args.part} speakers: {len({u[0] for u in utts})}, utterances: {len(utts)}; "
          f"append: {genuine.sum()} genuine and {(~genuine).sum()} stranger clips; within: "
          f"{len(genuine_sets)} genuine and {len(mixed_sets)} mixed 3-clip enrollments")
    print("rate    append: genuine refused  stranger accepted | within: genuine refused  "
          "intruder missed | genuine refused by source (append)")
    for rate in (float(r) for r in args.rates.split(",")):
        rule = admission.same_voice_rule(card, rate)
        passed = scores >= np.vectorize(lambda d, r=rule: r.cutoff(float(d), 1))(seconds)
        by_src = {s: 1 - passed[genuine & (source == s)].mean()
                  for s in sorted(set(source[genuine]))}
        w_ref = np.mean([any(odd_clips(card, c, rate)) for c in genuine_sets])
        w_miss = np.mean([not odd_clips(card, c, rate)[2] for c in mixed_sets])
        src = ", ".join(f"{s} {100 * v:.1f}%" for s, v in by_src.items())
        print(f"{rate:<7g} {100 * (1 - passed[genuine].mean()):20.2f}% "
              f"{100 * passed[~genuine].mean():17.2f}% | {100 * w_ref:15.2f}% "
              f"{100 * w_miss:16.2f}% | {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
