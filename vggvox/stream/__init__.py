"""The streaming engine: PCM blocks in, speech segments, window scores and turns out.

    RingBuffer (capture decoupling) -> Segmenter (VadGate + windows) -> embed ->
    TurnDecider (turns, hysteresis, change detection; an Identifier names them)

``Recognizer`` composes them for one stream; see its module for an example.
"""

from vggvox.stream.decider import TurnConfig, TurnDecider
from vggvox.stream.identify import Evidence, Identifier, Identity, OpenSetIdentifier
from vggvox.stream.recognizer import Recognizer, RecognizerConfig, ScoringConfig
from vggvox.stream.results import Result, SpeechEnded, SpeechStarted, TurnUpdate, WindowScore
from vggvox.stream.segmenter import Segmenter, Window
from vggvox.stream.vad import VadConfig
from vggvox.stream.windows import WindowConfig

__all__ = [
    "Evidence", "Identifier", "Identity", "OpenSetIdentifier", "Recognizer", "RecognizerConfig",
    "Result", "ScoringConfig", "Segmenter", "SpeechEnded", "SpeechStarted", "TurnConfig",
    "TurnDecider", "TurnUpdate", "VadConfig", "Window", "WindowConfig", "WindowScore",
]
