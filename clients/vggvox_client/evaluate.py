"""``vggvox-client evaluate``: a conversation through the streaming engine,
in-process (no daemon), scored against its RTTM truth.

Scored twice: by this project's own timeline scorer (vggvox.eval.timeline:
identification error rate, turns, flicker, delays, open set), and by
pyannote.metrics, a scorer nobody here wrote (vggvox.eval.diarization: DER and
its parts, JER, identification error rate with names, unknown voices). The
second needs the ``eval`` extra; without it, one line says so and the rest
is printed as before.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.eval.engine import enroll_from_list, recognize, turn_timeline
from vggvox.eval.openset import (
    ConversationOpenSet,
    check_false_accept,
    conversation_open_set,
    final_turns,
    plot_open_set,
)
from vggvox.eval.plot import plot_timelines
from vggvox.eval.timeline import ConversationScore, score_conversation
from vggvox.modelcard import DEFAULT_MODEL
from vggvox.protocol.endpoints import find_config
from vggvox.recording.identify import live_segments
from vggvox.recording.rttm import read_rttm
from vggvox.settings import PipelineSettings, load
from vggvox.store import ModelId
from vggvox.storeopen import open_store, store_argument
from vggvox.stream.recognizer import Recognizer, RecognizerConfig
from vggvox.voiceprints import VoiceprintSet
from vggvox_client.common import add_rule_args, output_file, print_json

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import numpy as np

    from vggvox.eval.diarization import DiarizationScore, ModeScore
    from vggvox.recording.rttm import Segment
    from vggvox.recording.segments import SpeakerSegment

NO_PYANNOTE = ("evaluate: DER and JER not computed: pyannote.metrics is not installed "
               "(pip install 'vggvox[eval]')")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="run a conversation through the streaming engine "
                                        "in-process and score its turns against RTTM truth")
    p.add_argument("audio", type=Path, help="the conversation (any audio file)")
    p.add_argument("--rttm", required=True, type=Path, metavar="FILE",
                   help="its truth: an RTTM file, whose SPEAKER lines are read (a malformed "
                        "line stops the run)")
    p.add_argument("--enroll-list", type=Path, metavar="LIST",
                   help="speakers to enroll, from a list (format below; default: the "
                        "voiceprints of --store)")
    p.add_argument("--store", type=store_argument, metavar="FILE|URL",
                   help="voiceprint store to read (a file, sqlite:PATH or a postgresql:// "
                        "URL), when no --enroll-list (default: the "
                        "config's, as the daemon's)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="vggvoxd.yaml whose vad, window, scoring and turns settings to use "
                        "(default: the daemon's own search order)")
    p.add_argument("--model", default=None,
                   help=f"model name or card path (default: the config's, else {DEFAULT_MODEL})")
    p.add_argument("--collar", type=float, default=0.25, metavar="S",
                   help="seconds left unscored each side of a true boundary (default "
                        "%(default)s)")
    p.add_argument("--png", type=output_file, metavar="FILE",
                   help="draw truth and output timelines to this PNG")
    add_rule_args(p, "default: the config's scoring.false_accept; overrides its "
                     "scoring.threshold", "the final turns' best scores")
    p.add_argument("--identify", action="store_true",
                   help="also score what vggvox-client identify answers for the recording "
                        "(the whole-file path: turns decided again, unknown voices "
                        "re-clustered, overlapped speech marked) by pyannote.metrics")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def load_voiceprints(args: argparse.Namespace, embedder: Embedder,
                     settings: PipelineSettings) -> VoiceprintSet:
    """The speakers of ``--enroll-list`` (its problems said on stderr, one line each), else
    those of ``--store`` or the config's store: evaluate's and identify's."""
    if args.enroll_list:
        enrolled = enroll_from_list(embedder, args.enroll_list, settings.vad,
                                    settings.enroll.min_speech_s)
        for line in enrolled.problems:
            print(f"{args.command}: {line}", file=sys.stderr)
        return enrolled.voiceprints
    store = open_store(args.store or settings.store_location())
    return VoiceprintSet.from_store(store, ModelId.of(embedder.card),
                                    embedder.card.embedding_size)


def recognizer_config(args: argparse.Namespace, settings: PipelineSettings
                      ) -> RecognizerConfig:
    """The config's recognizer settings, its scoring section overridden by the options:
    a rate given alone must not be silenced by a raw threshold in the config (a raw
    threshold wins in the rule)."""
    rec_config: RecognizerConfig = settings.recognizer()
    scoring = rec_config.scoring
    if args.false_accept is not None:
        check_false_accept(args.false_accept)
        scoring = replace(scoring, false_accept=args.false_accept, threshold=None)
    if args.threshold is not None:
        scoring = replace(scoring, threshold=args.threshold)
    return replace(rec_config, scoring=scoring)


def run(args: argparse.Namespace) -> int:
    # The daemon's file, found as the daemon finds it; its pipeline sections alone.
    settings = load(find_config(args.config))
    truth = read_rttm(args.rttm)  # first: a bad truth is one line, before any model loads
    if not truth:
        raise VggvoxError(f"{args.rttm}: no SPEAKER lines: nothing to score against")
    embedder = Embedder.from_card(args.model or settings.model.name,
                                  threads=settings.model.threads)
    voiceprints = load_voiceprints(args, embedder, settings)
    if not len(voiceprints):
        raise VggvoxError("no enrolled speakers: give --enroll-list, or enroll some first")
    audio = load_audio(args.audio)
    rec_config = recognizer_config(args, settings)
    recognizer = Recognizer(embedder, voiceprints, rec_config)
    t0 = time.perf_counter()
    results = recognize(recognizer, audio)
    took = time.perf_counter() - t0
    turns, decisions = turn_timeline(results)
    score = score_conversation(truth, set(voiceprints.names), turns, decisions,
                               collar=args.collar)
    open_set = conversation_open_set(truth, set(voiceprints.names), final_turns(results),
                                     collar=args.collar)
    if args.png:
        plot_timelines(truth, turns, args.png, f"{args.audio.name}: truth and turns")
    if args.det:
        if open_set.det is None:
            print(f"{args.det}: not drawn, it needs both strangers' and enrolled speakers' "
                  "scored time", file=sys.stderr)
        else:
            plot_open_set(open_set.det, args.det, f"{args.audio.name}: open set",
                          open_set.stranger_fa_rate, open_set.enrolled_miss_rate)
    seconds = len(audio) / SAMPLE_RATE
    diarization = diarization_score(truth, live_segments(results), voiceprints.names,
                                    seconds, args.collar)
    whole = (identify_score(truth, audio, embedder, voiceprints, rec_config, args.collar)
             if args.identify and diarization is not None else None)
    rule = recognizer.rule
    if args.json:
        print_json({**score.as_dict(), "audio_s": round(seconds, 3),
                    "compute_s": round(took, 3), "speakers": list(voiceprints.names),
                    "model": embedder.tag, "turns": len(turns),
                    "open_set": open_set.as_dict(), "rule": rule.describe(),
                    **rule.settings(),
                    "diarization": None if diarization is None else diarization.as_dict(),
                    **({"identify": whole.as_dict()} if whole is not None else {})})
    else:
        print(summary(score, seconds, took, len(turns)))
        print(open_set_summary(open_set, rule.describe()))
        if diarization is not None:
            print(diarization_summary(diarization))
        if whole is not None:
            print("identify (the whole-file path), " + diarization_summary(whole))
    return 0


def diarization_score(truth: list[Segment], output: Sequence[SpeakerSegment],
                      names: Iterable[str], seconds: float, collar: float,
                      overlaps: Sequence[tuple[float, float]] | None = None
                      ) -> DiarizationScore | None:
    """pyannote.metrics' figures of an answer; None (and one line on stderr) when the
    eval extra is not installed."""
    try:
        from vggvox.eval.diarization import score_recording
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("pyannote"):
            raise
        print(NO_PYANNOTE, file=sys.stderr)
        return None
    return score_recording(truth, output, set(names), overlaps=overlaps, duration_s=seconds,
                           collar=collar)


def identify_score(truth: list[Segment], audio: np.ndarray, embedder: Embedder,
                   voiceprints: VoiceprintSet, config: RecognizerConfig, collar: float
                   ) -> DiarizationScore | None:
    """What ``identify`` answers for the recording (its default path), scored."""
    from vggvox.recording.identify import IdentifyConfig, RecordingIdentifier
    from vggvox.recording.overlap import Segmentation

    identifier = RecordingIdentifier(embedder, voiceprints, IdentifyConfig(recognizer=config),
                                     Segmentation.from_card())
    result, _ = identifier.run(audio)
    return diarization_score(truth, result.segments, voiceprints.names, result.duration_s,
                             collar, result.overlaps)


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def summary(s: ConversationScore, audio_s: float, took_s: float, n_turns: int) -> str:
    delay = ("n/a" if s.delay_median is None
             else f"{s.delay_median:.2f} s median, {s.delay_p90:.2f} s p90")
    flicker = "n/a" if s.flicker is None else f"{s.flicker:.2f}"
    return "\n".join([
        f"audio {audio_s:.1f} s in {took_s:.1f} s; {n_turns} turns",
        # The two figures measure different things and can differ widely (7 % against
        # 100 %): say what each counts, so that the gap reads right (issue 20).
        f"identification error rate {pct(s.ier)} of {s.scored_s:.1f} s scored: time, "
        f"{s.missed_s:.1f} s with no label (missed: pauses kept in the truth, the lag "
        f"before a turn is first named) and {s.confusion_s:.1f} s with a wrong one",
        f"strangers' false-accept rate {pct(s.stranger_fa_rate)}",
        f"turn accuracy {pct(s.turn_accuracy)}: turns, {s.n_turns_right} of {s.n_turns} "
        "true turns labelled right for most of their time (the missed edges and pauses "
        "that the error rate counts do not make a turn wrong)",
        f"flicker {flicker} label changes per true change",
        f"delay to the right label after a change: {delay} ({s.missed_changes} never)",
    ])


def open_set_summary(o: ConversationOpenSet, rule: str) -> str:
    lines = [
        f"open set, {rule}: strangers accepted {pct(o.stranger_fa_rate)} of "
        f"{o.stranger_s:.1f} s; enrolled speakers missed {pct(o.enrolled_miss_rate)} of "
        f"{o.enrolled_s:.1f} s (wrong name {o.enrolled_wrong_s:.1f} s, unknown "
        f"{o.enrolled_unknown_s:.1f} s, no turn {o.enrolled_none_s:.1f} s)",
    ]
    if o.det is not None:
        t = o.as_dict()
        at = t["open_set_eer_threshold"]
        lines.append(f"best trade-off of one raw threshold over the turns' best scores: "
                     f"equal error {pct(t['open_set_eer'])} at "
                     f"{'above every score' if at is None else f'{at:.4f}'}; lowest total "
                     f"{pct(t['open_set_min_total'])}")
    return "\n".join(lines)


def _mode_line(m: ModeScore) -> str:
    def part(seconds: float) -> str:
        return pct(seconds / m.scored_s if m.scored_s else None)

    return (f"DER {pct(m.der)} (missed {part(m.missed_s)}, false alarm "
            f"{part(m.false_alarm_s)}, confusion {part(m.confusion_s)}) of "
            f"{m.scored_s:.1f} s, "
            f"JER {pct(m.jer)}, identification error rate with names {pct(m.ier)}")


def diarization_summary(d: DiarizationScore) -> str:
    m = d.with_overlap
    cps = m.clusters_per_stranger
    return "\n".join([
        f"pyannote.metrics, collar {d.collar_s:g} s each side: {_mode_line(m)}",
        f"  overlapped speech skipped: {_mode_line(d.without_overlap)}",
        f"  unknown voices: purity {pct(m.unknown_purity)} of {m.unknown_s:.1f} s; "
        f"{'n/a' if cps is None else f'{cps:.2f}'} clusters per stranger "
        f"({m.strangers_clustered} of {m.strangers} strangers under an unknown label); "
        f"strangers' time in their main cluster {pct(m.stranger_coverage)}",
    ])
