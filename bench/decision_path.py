"""How many times a window's way through the decision returns to a module it left.

Issue 22 asked that the room's state make the way through the decider, the
identifier, the unknown voices and the calibration shorter, not busier. This
traces the calls of one window's decision (one that names an enrolled speaker,
and one that names nobody and joins an unknown voice), keeps those that enter
one of those modules, and counts each entry into a module already entered and
left since the window came in. No model: random unit embeddings, the shipped
calibration, 4 enrolled speakers.

    .venv/bin/python bench/decision_path.py
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import numpy as np
from benchkit import ROOT

from vggvox.calibration import AcceptRule, Calibration
from vggvox.stream.decider import TurnConfig, TurnDecider
from vggvox.stream.identify import OpenSetIdentifier
from vggvox.stream.segmenter import Window
from vggvox.stream.unknowns import UnknownClusters, UnknownConfig
from vggvox.stream.vad import SpeechStart
from vggvox.voiceprints import VoiceprintSet

MODULES = {"vggvox.stream.decider", "vggvox.stream.identify", "vggvox.stream.unknowns",
           "vggvox.calibration", "vggvox.rooms"}
CALIBRATION = ROOT / "weights" / "vggvox_weights" / "campplus-int8.calibration.yaml"


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def trace(enrolled_voice: bool) -> list[str]:
    """The modules entered, in order (repeats in a row merged), for the second window
    of a turn."""
    rng = np.random.default_rng(0)
    cal = Calibration.load(CALIBRATION)
    prints = VoiceprintSet(192)
    voices = [unit(rng.standard_normal(192)) for _ in range(4)]
    for i, v in enumerate(voices):
        prints.add(f"s{i}", v[None, :])
    decider = TurnDecider(OpenSetIdentifier(prints, AcceptRule(0.005, None, cal)),
                          TurnConfig(), 0.3, 192,
                          UnknownClusters(UnknownConfig(), AcceptRule(0.001, None, cal), 192))
    voice = voices[0] if enrolled_voice else unit(rng.standard_normal(192))
    decider.speech_start(SpeechStart(0))
    decider.window(Window(0, 32000, np.zeros(32000, np.int16)), voice)
    entered: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        name = frame.f_globals.get("__name__", "")
        if event == "call" and name in MODULES and (not entered or entered[-1] != name):
            entered.append(name)

    sys.setprofile(profile)
    try:
        decider.window(Window(8000, 40000, np.zeros(32000, np.int16)), voice)
    finally:
        sys.setprofile(None)
    return [m.rsplit(".", 1)[-1] for m in entered]


def returns(path: list[str]) -> int:
    seen: set[str] = set()
    back = 0
    for m in path:
        back += m in seen
        seen.add(m)
    return back


def main() -> None:
    for what, enrolled in (("names an enrolled speaker", True), ("an unknown voice", False)):
        path = trace(enrolled)
        print(f"{what}: {returns(path)} returns to a module already left")
        print("  " + " > ".join(path))


if __name__ == "__main__":
    main()
