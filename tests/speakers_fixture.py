"""Two speakers, their enrollment clips and a conversation between them with its turns.

From ../shared/data/fixtures when present (ls-3005 and ls-3331 and stream_2spk
with its RTTM); otherwise two espeak-ng voices, synthesised and joined here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import FIXTURES, SENTENCES, VOICES, speak, write_wav
from vggvox.audio import load_audio


@dataclass(frozen=True)
class Conversation:
    enroll: dict[str, list[Path]]
    stream: Path
    turns: list[tuple[float, float, str]]
    """(start s, end s, speaker)"""


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    turns = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            turns.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return turns


def conversation(tmp: Path) -> Conversation:
    if (FIXTURES / "stream_2spk.wav").exists():
        names = ["ls-3005", "ls-3331"]
        return Conversation({n: sorted(FIXTURES.glob(f"{n}__*.wav")) for n in names},
                            FIXTURES / "stream_2spk.wav", read_rttm(FIXTURES / "stream_2spk.rttm"))
    enroll = {n: [speak(s, v, tmp / f"{n}_{i}.wav") for i, s in enumerate(SENTENCES[:2])]
              for n, v in VOICES.items()}
    order = ["alice", "bob", "alice", "bob"]
    parts, turns, t = [], [], 0.0
    gap = np.zeros(8000, dtype=np.float32)
    for i, name in enumerate(order):
        x = load_audio(speak(SENTENCES[2], VOICES[name], tmp / f"turn{i}.wav"))
        parts += [x, gap]
        turns.append((t, t + len(x) / 16000, name))
        t += (len(x) + len(gap)) / 16000
    stream = write_wav(tmp / "stream.wav", np.concatenate(parts))
    return Conversation(enroll, stream, turns)


def score_events(events: list[dict], turns: list[tuple[float, float, str]],
                 offset: float = 0.0) -> tuple[int, int]:
    """(speaker events inside a turn that name its speaker, speaker events inside a turn)."""
    good = total = 0
    for ev in events:
        if ev["type"] != "speaker":
            continue
        mid = (ev["t_start"] + ev["t_end"]) / 2 - offset
        for start, end, name in turns:
            if start <= mid <= end:
                total += 1
                good += ev["speaker"] == name
    return good, total


def vctk(speech: Path, spk: str, utt: str) -> np.ndarray:
    """One VCTK utterance of the shared development speech (spk like 'p226')."""
    return load_audio(speech / "vctk" / f"vctk-{spk}" / f"{spk}_{utt}.flac")


def joined(parts: list[tuple[str, np.ndarray]], offset: float = 0.0
           ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Utterances with 1 s of silence after each: audio and (speaker, start, end) truth."""
    gap = np.zeros(16000, np.float32)
    out, truth, t = [], [], offset
    for who, x in parts:
        out += [x, gap]
        truth.append((who, t, t + len(x) / 16000))
        t += (len(x) + len(gap)) / 16000
    return np.concatenate(out), truth


def labels_within(turns: list, start: float, end: float) -> set[str | None]:
    """Labels of the final turns (library results or wire dicts) mostly inside [start, end]."""
    out = set()
    for t in turns:
        d = t if isinstance(t, dict) else {"t_start": t.t_start, "t_end": t.t_end,
                                           "speaker": t.speaker, "unknown": t.unknown}
        a, b = d["t_start"], d["t_end"]
        if min(b, end) - max(a, start) > 0.5 * (b - a):
            out.add(d["speaker"] or d["unknown"])
    return out
