"""Running the streaming engine in-process for an evaluation: the same Recognizer
the daemon runs, fed from a file instead of a microphone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox.embedder import Embedder
from vggvox.enrollment import EnrollmentError, enroll
from vggvox.errors import VggvoxError
from vggvox.eval.lists import Utterance, read_utterances
from vggvox.eval.timeline import Decision, Labelled
from vggvox.stream.recognizer import Recognizer
from vggvox.stream.results import Result, TurnUpdate
from vggvox.stream.vad import VadConfig
from vggvox.voiceprints import VoiceprintSet


def recognize(recognizer: Recognizer, audio: np.ndarray, block_s: float = 0.02) -> list[Result]:
    """All results for a whole stream, fed in blocks as a microphone would deliver it."""
    recognizer.reset()
    block = max(1, round(block_s * SAMPLE_RATE))
    out: list[Result] = []
    for i in range(0, len(audio), block):
        out += recognizer.feed(audio[i : i + block])
    return out + recognizer.finish()


def turn_timeline(results: Iterable[Result | dict[str, object]]
                  ) -> tuple[list[Labelled], list[Decision]]:
    """Final turns and every turn decision, from library results or wire events (dicts)."""
    finals: list[Labelled] = []
    decisions: list[Decision] = []
    for r in results:
        if isinstance(r, TurnUpdate):
            start, end, label, final = r.t_start, r.t_end, r.speaker, r.final
        elif isinstance(r, dict) and r.get("type") == "turn":
            start, end = float(r["t_start"]), float(r["t_end"])  # type: ignore[arg-type]
            label, final = r.get("speaker"), bool(r.get("final"))  # type: ignore[assignment]
        else:
            continue
        decisions.append(Decision(at=end, start=start, end=end, label=label))
        if final:
            finals.append(Labelled(start, end, label))
    return finals, decisions


@dataclass
class Enrolled:
    voiceprints: VoiceprintSet
    problems: list[str] = field(default_factory=list)
    """One line per unusable file or speaker."""


def enroll_from_list(embedder: Embedder, path: Path, vad: VadConfig | None = None,
                     min_speech_s: float = 3.0,
                     load: Callable[[Path], np.ndarray] = load_audio) -> Enrolled:
    """Voiceprints for every speaker of a ``filename speaker`` list (``enroll_utterances``);
    its malformed lines come first among the problems."""
    utts, bad = read_utterances(path)
    out = enroll_utterances(embedder, utts, str(path), vad, min_speech_s, load)
    out.problems[:0] = [str(e) for e in bad]
    return out


def enroll_utterances(embedder: Embedder, utts: Iterable[Utterance], where: str,
                      vad: VadConfig | None = None, min_speech_s: float = 3.0,
                      load: Callable[[Path], np.ndarray] = load_audio) -> Enrolled:
    """Voiceprints for every speaker of ``utts``, through the one enrollment function
    (VAD, then embeddings of the speech), and one line per file or speaker left out,
    naming ``where`` (and the line). ``load`` turns a file into samples (e.g. as 16-bit
    PCM, the way a daemon is sent them)."""
    out = Enrolled(VoiceprintSet(embedder.card.embedding_size, embedder.tag))
    by_speaker: dict[str, list[tuple[str, np.ndarray]]] = {}
    for u in utts:
        try:
            by_speaker.setdefault(u.speaker, []).append((str(u.path), load(u.path)))
        except VggvoxError as err:
            out.problems.append(f"{where}:{u.line}: {err}")
    for name, clips in by_speaker.items():
        try:
            enrollment = enroll(embedder, name, [x for _, x in clips],
                                [src for src, _ in clips], vad, min_speech_s)
        except EnrollmentError as err:
            out.problems.append(f"{where}: {err}")
            continue
        out.voiceprints.add(name, enrollment.embeddings)
    return out
