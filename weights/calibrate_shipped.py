"""Fit each shipped model's open-set calibration and check it on held-apart speakers.

    .venv/bin/python weights/calibrate_shipped.py                 # both models
    .venv/bin/python weights/calibrate_shipped.py --model campplus --lists /tmp/lists

Needs the development speech (``../shared/data/speech``; ``--speech`` elsewhere)
and only the runtime dependencies. The speakers are split in halves, stratified
by source (``vggvox.eval.calibration_fit.split_speakers``): the fit sees only ``fit``
speakers; the false-accept table it prints and records is measured on the
``held`` speakers, whose voices the fit never heard. ``--lists`` writes the
four lists (fit/held x enroll/test) so that evaluations can use ``held`` alone.

Writes ``weights/<model>.calibration.yaml``, which the card names with its
``calibration`` key. Rerunning on the same data gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "vggvox_weights"  # the package: the models and their cards
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402

from vggvox.embedder import Embedder  # noqa: E402
from vggvox.eval.calibration_fit import EvidenceSet, gather, split_speakers  # noqa: E402
from vggvox.eval.engine import enroll_utterances  # noqa: E402
from vggvox.eval.fitcheck import Half, fit_and_check, write_calibration  # noqa: E402
from vggvox.eval.lists import Utterance, read_utterances  # noqa: E402
from vggvox.modelcard import SHIPPED, load_card, resolve_card  # noqa: E402

SPEECH = HERE.parent.parent / "shared" / "data" / "speech"
FITTED_ON = (
    "Half of the speakers of the project's development speech (LibriSpeech test-other and "
    "train-clean-100, VCTK, FSDD, AMI, SpeechBrain samples; CC BY 4.0 / CC BY-SA 4.0 / "
    "Apache-2.0, see shared/data/README.md), chosen per source by a hash of the speaker's "
    "name (vggvox.eval.calibration_fit.split_speakers, 'fit'); the other half ('held') is kept "
    "apart for checking and for every open-set figure in the README."
)


def write_lists(speech: Path, out: Path) -> dict[str, Path]:
    """fit/held x enroll/test lists, paths absolute so they work from anywhere."""
    enroll, _ = read_utterances(speech / "enroll_list.csv")
    test, _ = read_utterances(speech / "test_list.csv")
    fold = split_speakers((u.speaker, _source(speech, u)) for u in enroll + test)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part in ("fit", "held"):
        for kind, utts in (("enroll", enroll), ("test", test)):
            p = paths[f"{part}_{kind}"] = out / f"{part}_{kind}.csv"
            p.write_text("".join(f"{u.path} {u.speaker}\n" for u in utts
                                 if fold[u.speaker] == part))
    return paths


def _source(speech: Path, u: Utterance) -> str:
    return u.path.resolve().relative_to(speech.resolve()).parts[0]


def evidence(embedder: Embedder, lists: dict[str, Path], part: str) -> Half:
    """Voiceprints and evidence of one part, the evidence cached under weights/.cache
    by content."""
    enroll, _ = read_utterances(lists[f"{part}_enroll"])
    enrolled = enroll_utterances(embedder, enroll, str(lists[f"{part}_enroll"]))
    vps = enrolled.voiceprints
    for line in enrolled.problems:
        print(f"  not enrolled: {line}")
    utts, _ = read_utterances(lists[f"{part}_test"])
    key = hashlib.sha256((embedder.card.sha256 + lists[f"{part}_test"].read_text()).encode())
    cache = HERE / ".cache" / f"evidence-{key.hexdigest()[:16]}.npz"
    print(f"  {part}: {len(vps)} speakers, {len(utts)} test utterances", flush=True)
    if cache.is_file():
        z = np.load(cache)
        return Half(vps, EvidenceSet(z["embeddings"], z["speech_s"], z["speakers"]))
    ev = gather(embedder, utts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embeddings=ev.embeddings, speech_s=ev.speech_s, speakers=ev.speakers)
    return Half(vps, ev)


def say(line: str) -> None:
    print(line, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=[*SHIPPED, "all"], default="all")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--lists", type=Path, default=HERE / ".cache" / "lists",
                    help="where to write the fit/held lists (default weights/.cache/lists)")
    ap.add_argument("--lists-only", action="store_true",
                    help="write the fit/held lists and stop (for open-set evaluations)")
    args = ap.parse_args()
    if not (args.speech / "enroll_list.csv").is_file():
        print(f"calibrate: {args.speech}: no enroll_list.csv (the development speech)",
              file=sys.stderr)
        return 2
    lists = write_lists(args.speech, args.lists)
    if args.lists_only:
        print("\n".join(str(p) for p in lists.values()))
        return 0
    for model in SHIPPED if args.model == "all" else [args.model]:
        card_path = resolve_card(model)
        card = load_card(card_path, calibration=False)  # the one being replaced
        embedder = Embedder(card, threads=2)
        print(f"{model}: fitting", flush=True)
        fit_half = evidence(embedder, lists, "fit")
        held_half = evidence(embedder, lists, "held")
        cal, checks = fit_and_check(fit_half, held_half, card.name, FITTED_ON, say)
        out = card_path.parent / f"{model}.calibration.yaml"
        header = (f"# Open-set calibration of {card.name}, written by "
                  "weights/calibrate_shipped.py.\n"
                  "# See vggvox/calibration.py for what each number means. The 'check'\n"
                  "# tables are measured on the held-apart speakers (informative).\n")
        write_calibration(cal, checks, out, header)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
