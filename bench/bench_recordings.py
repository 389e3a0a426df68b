"""Who spoke when in built conversations, by name, scored by pyannote.metrics.

    .venv/bin/python bench/bench_recordings.py [--model M] [--count 3] [--duration 150]
                                              [--overlap 0.15] [--no-overlap-model] [--json]

Builds two sets of conversations from ../shared/data/speech (``--count`` each, at
least ``--duration`` s, 4 enrolled speakers and 2 strangers, seed 0, so that
both sets have the same casts): one as ``conversations`` builds them by default,
with no overlap, and one with ``--overlap`` of the speech time with two voices.
Each conversation goes through the in-process identify pipeline
(vggvox.recording.identify.RecordingIdentifier, the default path of
``vggvox-client identify``: streaming pass, turns decided again, unknown voices
re-clustered, overlapped speech from the segmentation model), with its own
enrollment list, on one core (model threads 1). vggvox.eval.diarization scores
it (collar 0.25 s each side):

- DER with its missed, false-alarm and confusion parts, JER, identification
  error rate with names (strangers right under one consistent unknown label),
  overlapped speech scored and skipped;
- unknown-voice purity and clusters per stranger;
- overlap detection precision and recall (collar 0);
- speed: seconds of audio per second of compute (x real time), the whole
  pipeline and the overlap model alone.

Per conversation and pooled per set (pyannote's components summed), then the
issue's targets, each with its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from benchkit import SPEECH

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.eval.conversations import Conversation, ConversationSpec, build_conversations
from vggvox.eval.diarization import DiarizationScore, DiarizationScorer, ModeScore
from vggvox.eval.engine import enroll_from_list
from vggvox.eval.lists import read_utterances
from vggvox.eval.remembered import consistency, split_conversation
from vggvox.provisional import ProvisionalVoices
from vggvox.recording.identify import (
    Activity,
    IdentifyConfig,
    OverlapFinder,
    RecordingIdentifier,
)
from vggvox.recording.overlap import DEFAULT_MODEL as OVERLAP_MODEL
from vggvox.recording.overlap import Segmentation
from vggvox.recording.rttm import read_rttm
from vggvox.settings import PipelineSettings
from vggvox.store import VoiceprintStore
from vggvox.stream.recognizer import merge_rule
from vggvox_client.recordings import Memory

KINDS = ("without_overlap", "with_overlap")


class TimedOverlap:
    """The overlap model, timed apart from the rest of the pipeline."""

    def __init__(self, model: OverlapFinder) -> None:
        self.model = model
        self.seconds = 0.0

    def activity(self, audio: np.ndarray) -> Activity:
        t0 = time.perf_counter()
        try:
            return self.model.activity(audio)
        finally:
            self.seconds += time.perf_counter() - t0


def build(out: Path, count: int, duration: float, overlap: float
          ) -> dict[str, list[Conversation]]:
    material = read_utterances(SPEECH / "test_list.csv")[0]
    enroll = read_utterances(SPEECH / "enroll_list.csv")[0]
    spec = ConversationSpec(n_conversations=count, duration_s=duration)
    return {kind: build_conversations(
                material, enroll,
                replace(spec, overlap_fraction=overlap if kind == KINDS[1] else 0.0), out / kind)
            for kind in KINDS}


def figures(s: DiarizationScore) -> dict[str, Any]:
    """The table's figures of one score (overlap scored, and skipped)."""
    def mode(m: ModeScore) -> dict[str, Any]:
        def part(seconds: float) -> float | None:
            return seconds / m.scored_s if m.scored_s else None

        return {"der": m.der, "missed": part(m.missed_s), "false_alarm": part(m.false_alarm_s),
                "confusion": part(m.confusion_s), "jer": m.jer, "ier": m.ier,
                "purity": m.unknown_purity, "clusters_per_stranger": m.clusters_per_stranger,
                "strangers_clustered": f"{m.strangers_clustered}/{m.strangers}"}
    o = s.overlap
    return {"scored": mode(s.with_overlap), "skipped": mode(s.without_overlap),
            "overlap_precision": None if o is None else o.precision,
            "overlap_recall": None if o is None else o.recall}


def run_set(convs: list[Conversation], embedder: Embedder, settings: PipelineSettings,
            overlap: TimedOverlap | None, say: Any) -> dict[str, Any]:
    scorer = DiarizationScorer()
    config = IdentifyConfig(recognizer=settings.recognizer())
    rows = []
    audio_s = compute_s = overlap_s = 0.0
    for conv in convs:
        enrolled = enroll_from_list(embedder, conv.enroll_list, settings.vad,
                                    settings.enroll.min_speech_s)
        identifier = RecordingIdentifier(embedder, enrolled.voiceprints, config, overlap)
        audio = load_audio(conv.wav)
        before = overlap.seconds if overlap else 0.0
        result, _ = identifier.run(audio, conv.wav)
        took_overlap = (overlap.seconds if overlap else 0.0) - before
        score = scorer.add(read_rttm(conv.rttm), result.segments, enrolled.voiceprints.names,
                           overlaps=result.overlaps if overlap else None,
                           duration_s=len(audio) / SAMPLE_RATE, uri=conv.wav.stem)
        seconds = len(audio) / SAMPLE_RATE
        audio_s, compute_s, overlap_s = (audio_s + seconds, compute_s + result.compute_s,
                                         overlap_s + took_overlap)
        rows.append({"conversation": conv.wav.stem, "audio_s": round(seconds, 2),
                     "overlap_share": conv.overlap_share, "speed": seconds / result.compute_s,
                     "overlap_model_speed": seconds / took_overlap if took_overlap else None,
                     "problems": enrolled.problems, **figures(score),
                     "score": score.as_dict(), "extra": result.extra})
        say(f"{conv.wav.parent.name}/{conv.wav.name}: DER {pct(score.with_overlap.der)}, "
            f"{seconds / result.compute_s:.1f}x real time")
    pooled = scorer.total()
    return {"rows": rows, "pooled": {"conversation": "all", "audio_s": round(audio_s, 2),
                                     "speed": audio_s / compute_s,
                                     "overlap_model_speed": audio_s / overlap_s
                                     if overlap_s else None,
                                     **figures(pooled), "score": pooled.as_dict()}}


REMEMBER = ConversationSpec(n_conversations=3, duration_s=150.0, stranger_fraction=0.4)
"""Conversations for --remember: 4 enrolled speakers and 2 strangers as the other sets, the
strangers with 40 % of the time, so that each is heard in several recordings (with the
default 20 %, a stranger has 1-3 turns, often all in one recording)."""


def run_remember(embedder: Embedder, settings: PipelineSettings,
                 overlap: TimedOverlap | None, out: Path) -> list[dict[str, Any]]:
    """Each REMEMBER conversation cut in 3 recordings, identified in order with --remember
    (a store per conversation): how consistently one label names each stranger's turns."""
    convs = build_conversations(read_utterances(SPEECH / "test_list.csv")[0],
                                read_utterances(SPEECH / "enroll_list.csv")[0], REMEMBER,
                                out / "conversations")
    config = IdentifyConfig(recognizer=settings.recognizer())
    rows = []
    for conv in convs:
        enrolled = enroll_from_list(embedder, conv.enroll_list, settings.vad,
                                    settings.enroll.min_speech_s)
        identifier = RecordingIdentifier(embedder, enrolled.voiceprints, config, overlap)
        store = VoiceprintStore(out / f"{conv.wav.stem}-voices.db")
        memory = Memory(ProvisionalVoices(store, embedder.card),
                        merge_rule(embedder.card, config.recognizer))
        parts = split_conversation(conv, out / "parts")
        outputs = [memory.remember(identifier.run(load_audio(p.wav), p.wav)[0]).segments
                   for p in parts]
        rows += [{"conversation": conv.wav.stem, **asdict(r), "share": r.share}
                 for r in consistency(parts, outputs, conv.enrolled)]
    return rows


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def table(rows: list[dict[str, Any]], mode: str) -> str:
    head = (f"{'conv':>6} {'audio s':>7} {'DER':>7} {'miss':>6} {'FA':>6} {'conf':>6} "
            f"{'JER':>7} {'IER':>7} {'purity':>7} {'cl/str':>6} {'ovl P':>7} {'ovl R':>7} "
            f"{'speed':>7} {'ovl x':>7}")
    lines = [head]
    for r in rows:
        m = r[mode]
        cps = m["clusters_per_stranger"]
        ovx = r["overlap_model_speed"]
        lines.append(
            f"{r['conversation']!s:>6} {r['audio_s']:>7.1f} {pct(m['der']):>7} "
            f"{pct(m['missed']):>6} {pct(m['false_alarm']):>6} {pct(m['confusion']):>6} "
            f"{pct(m['jer']):>7} {pct(m['ier']):>7} {pct(m['purity']):>7} "
            f"{'n/a' if cps is None else f'{cps:.2f}':>6} {pct(r['overlap_precision']):>7} "
            f"{pct(r['overlap_recall']):>7} {r['speed']:>6.1f}x "
            f"{'n/a' if ovx is None else f'{ovx:.0f}x':>7}")
    return "\n".join(lines)


def targets(sets: dict[str, Any], remember: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets (section 6), overlapped speech scored."""
    plain = sets[KINDS[0]]["pooled"]["scored"]
    # A voice heard in one recording only has nothing to be remembered across.
    again = [r for r in remember if r["recordings"] >= 2]
    turns = sum(r["turns"] for r in again)
    same = sum(r["same"] for r in again) / turns if turns else None
    over = sets[KINDS[1]]["pooled"]
    checks = [
        ("without overlap: identification error rate <= 3 %", plain["ier"], "<=", 0.03),
        ("without overlap: DER <= 5 %", plain["der"], "<=", 0.05),
        ("without overlap: unknown-voice purity >= 95 %", plain["purity"], ">=", 0.95),
        ("without overlap: clusters per stranger <= 1.2", plain["clusters_per_stranger"],
         "<=", 1.2),
        ("with overlap: DER <= 12 %", over["scored"]["der"], "<=", 0.12),
        ("with overlap: overlap recall >= 60 %", over["overlap_recall"], ">=", 0.60),
        ("with overlap: overlap precision >= 80 %", over["overlap_precision"], ">=", 0.80),
        ("--remember, 3 recordings: a stranger's turns under one label >= 90 % (strangers "
         "heard in 2 or more)", same,
         ">=", 0.90),
    ]
    return [{"target": name, "value": v,
             "met": v is not None and (v <= bound if op == "<=" else v >= bound)}
            for name, v, op, bound in checks]


def report(out: dict[str, Any]) -> str:
    lines = [f"model {out['model']}, overlap model {out['overlap_model'] or 'none'}; "
             f"collar 0.25 s each side (overlap detection: 0); speed = x real time on one "
             f"core (ovl x: the overlap model alone)"]
    for kind in KINDS:
        s = out["sets"][kind]
        rows = [*s["rows"], s["pooled"]]
        shares = [r["overlap_share"] for r in s["rows"] if r["overlap_share"] is not None]
        title = kind.replace("_", " ") + (
            f" (two voices {', '.join(pct(v) for v in shares)} of the speech)" if shares else "")
        lines += ["", f"{title}, overlapped speech scored:", table(rows, "scored"),
                  "overlapped speech skipped:", table(rows, "skipped")]
        for r in s["rows"]:
            if r["problems"]:
                lines.append(f"  {r['conversation']} enrollment problems: {r['problems']}")
    lines += ["", "--remember: 3 conversations (4 enrolled, 2 strangers with 40 % of the "
                  "time), each cut in 3 recordings identified in order:"]
    lines += [f"  {r['conversation']} {r['speaker']}: {r['label']} on {r['same']} of "
              f"{r['turns']} turns, heard in {r['recordings']} recordings"
              for r in out["remember"]]
    lines.append("")
    for t in out["targets"]:
        v = t["value"]
        shown = "n/a" if v is None else (f"{v:.2f}" if "clusters" in t["target"] else pct(v))
        lines.append(f"{'met ' if t['met'] else 'MISS'} {t['target']}: {shown}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=PipelineSettings().model.name,
                        help="model name or card path (default: %(default)s)")
    parser.add_argument("--count", type=int, default=3, help="conversations per set")
    parser.add_argument("--duration", type=float, default=ConversationSpec().duration_s,
                        help="minimum seconds per conversation (default: %(default)s)")
    parser.add_argument("--overlap", type=float, default=0.15,
                        help="share of the speech with two voices in the second set")
    parser.add_argument("--no-overlap-model", action="store_true",
                        help="do not run the segmentation model (no overlap detection)")
    parser.add_argument("--out", type=Path, help="write the conversations here (kept)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--cores", type=int, default=1,
                        help="pin the bench to this many cores (default: %(default)s, as the "
                             "speed target says; 0: do not pin)")
    args = parser.parse_args()
    if not (SPEECH / "test_list.csv").is_file():
        print(f"bench_recordings: no speech data in {SPEECH}", file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    settings = PipelineSettings()
    embedder = Embedder.from_card(args.model, threads=1)
    overlap = (None if args.no_overlap_model
               else TimedOverlap(Segmentation.from_card(OVERLAP_MODEL, threads=1)))
    if args.cores:  # the targets are on one core: the compute, pinned
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    with tempfile.TemporaryDirectory(prefix="vggvox-recordings-") as name:
        out_dir = args.out or Path(name)
        say(f"building conversations in {out_dir}")
        sets = build(out_dir, args.count, args.duration, args.overlap)
        result: dict[str, Any] = {
            "model": args.model, "overlap_model": None if overlap is None else OVERLAP_MODEL,
            "sets": {kind: run_set(convs, embedder, settings, overlap, say)
                     for kind, convs in sets.items()}}
        result["remember"] = run_remember(embedder, settings, overlap, out_dir / "remember")
        say("remember: " + ", ".join(f"{r['speaker']} {r['same']}/{r['turns']}"
                                     for r in result["remember"]))
    result["targets"] = targets(result["sets"], result["remember"])
    print(json.dumps(result, indent=2, default=str) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
