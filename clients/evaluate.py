"""``vggvox-client evaluate``: a conversation through the streaming engine,
in-process (no daemon), scored against its RTTM truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.errors import VggvoxError
from vggvox.eval.engine import enroll_from_list, recognize, turn_timeline
from vggvox.eval.plot import plot_timelines
from vggvox.eval.rttm import read_rttm
from vggvox.eval.timeline import ConversationScore, score_conversation
from vggvox.modelcard import DEFAULT_MODEL
from vggvox.store import VoiceprintStore
from vggvox.stream.recognizer import Recognizer, RecognizerConfig
from vggvox.voiceprints import VoiceprintSet
from vggvox_client.common import print_json


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="run a conversation through the streaming engine "
                                        "in-process and score its turns against RTTM truth")
    p.add_argument("audio", type=Path, help="the conversation (any audio file)")
    p.add_argument("--rttm", required=True, type=Path, help="its truth (RTTM SPEAKER lines)")
    p.add_argument("--enroll-list", type=Path,
                   help="'filename speaker' list to enroll from (default: the voiceprints "
                        "of --store)")
    p.add_argument("--store", type=Path, help="voiceprint store (default: the daemon's)")
    p.add_argument("--config", type=Path,
                   help="vggvoxd.yaml whose vad, window, scoring and turns settings to use "
                        "(default: the daemon's own search order)")
    p.add_argument("--model", default=None,
                   help=f"model name or card path (default: the config's, else {DEFAULT_MODEL})")
    p.add_argument("--collar", type=float, default=0.25,
                   help="seconds left unscored each side of a true boundary (default 0.25)")
    p.add_argument("--png", type=Path, help="draw truth and output timelines to this PNG")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def _voiceprints(args: argparse.Namespace, embedder: Embedder, settings: object
                 ) -> VoiceprintSet:
    from vggvoxd.config import Settings

    assert isinstance(settings, Settings)
    if args.enroll_list:
        enrolled = enroll_from_list(embedder, args.enroll_list, settings.vad,
                                    settings.enroll.min_speech_s)
        for line in enrolled.problems:
            print(f"evaluate: {line}", file=sys.stderr)
        return enrolled.voiceprints
    store = VoiceprintStore(args.store or settings.store_path())
    return VoiceprintSet.from_store(store, embedder.tag, embedder.card.embedding_size)


def run(args: argparse.Namespace) -> int:
    from vggvoxd import config

    settings, _ = config.load(args.config)
    embedder = Embedder.from_card(args.model or settings.model.name,
                                  threads=settings.model.threads)
    voiceprints = _voiceprints(args, embedder, settings)
    if not len(voiceprints):
        raise VggvoxError("no enrolled speakers: give --enroll-list, or enroll some first")
    truth = read_rttm(args.rttm)
    audio = load_audio(args.audio)
    rec_config: RecognizerConfig = settings.recognizer()
    recognizer = Recognizer(embedder, voiceprints, rec_config)
    t0 = time.perf_counter()
    results = recognize(recognizer, audio)
    took = time.perf_counter() - t0
    turns, decisions = turn_timeline(results)
    score = score_conversation(truth, set(voiceprints.names), turns, decisions,
                               collar=args.collar)
    if args.png:
        plot_timelines(truth, turns, args.png, f"{args.audio.name}: truth and turns")
    seconds = len(audio) / SAMPLE_RATE
    if args.json:
        print_json({**score.as_dict(), "audio_s": round(seconds, 3),
                    "compute_s": round(took, 3), "speakers": list(voiceprints.names),
                    "model": embedder.tag, "turns": len(turns)})
    else:
        print(summary(score, seconds, took, len(turns)))
    return 0


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def summary(s: ConversationScore, audio_s: float, took_s: float, n_turns: int) -> str:
    delay = ("n/a" if s.delay_median is None
             else f"{s.delay_median:.2f} s median, {s.delay_p90:.2f} s p90")
    flicker = "n/a" if s.flicker is None else f"{s.flicker:.2f}"
    return "\n".join([
        f"audio {audio_s:.1f} s in {took_s:.1f} s; {n_turns} turns",
        f"identification error rate {pct(s.ier)} of {s.scored_s:.1f} s scored",
        f"strangers' false-accept rate {pct(s.stranger_fa_rate)}",
        f"turn accuracy {pct(s.turn_accuracy)}",
        f"flicker {flicker} label changes per true change",
        f"delay to the right label after a change: {delay} ({s.missed_changes} never)",
    ])
