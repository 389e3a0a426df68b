"""vggvox: speaker identification with ONNX speaker embeddings.

The library, with no sockets and no daemon settings: audio loading, model
cards and the embedder, voiceprints (in memory, and the SQLite store),
enrollment, the streaming recognizer (``vggvox.stream``) and evaluation
(``vggvox.eval``). The daemon (``vggvoxd``) and the clients
(``vggvox_client``) are built on it, and so can your application::

    from vggvox import Recognizer, VoiceprintSet, enroll, load_audio, load_model

A running daemon is reached with ``from vggvox_client import Client``: the
library has no sockets and does not import the daemon, the clients or their
protocol (``vggvox.protocol``); the contracts in setup.cfg (``lint-imports``)
hold it to that. The names below are imported on first use, so that
``import vggvox.errors`` does not load ONNX Runtime. See docs/python.md for
examples.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# ONNX Runtime's wheels for Linux (1.2x on) collect usage telemetry by default: a
# device id and an event cache under ~/.cache/Microsoft, uploaded when the network
# allows. Voices stay on this machine, and so does anything about their use: opted
# out before any module of ours loads ONNX Runtime (it reads this once, at load).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_EXPORTS = {
    "load_audio": "vggvox.audio",
    "SAMPLE_RATE": "vggvox.audio",
    "Embedder": "vggvox.embedder",
    "load_model": "vggvox.embedder",
    "enroll": "vggvox.enrollment",
    "VggvoxError": "vggvox.errors",
    "VoiceprintStore": "vggvox.store",
    "VoiceprintSet": "vggvox.voiceprints",
    "Recognizer": "vggvox.stream.recognizer",
    "RecognizerConfig": "vggvox.stream.recognizer",
    "TurnUpdate": "vggvox.stream.results",
    "WindowScore": "vggvox.stream.results",
    "SpeechStarted": "vggvox.stream.results",
    "SpeechEnded": "vggvox.stream.results",
}

__all__ = [
    "SAMPLE_RATE", "Embedder", "Recognizer", "RecognizerConfig",
    "SpeechEnded", "SpeechStarted", "TurnUpdate", "VggvoxError", "VoiceprintSet",
    "VoiceprintStore", "WindowScore", "enroll", "load_audio", "load_model",
]

if TYPE_CHECKING:
    from vggvox.audio import SAMPLE_RATE, load_audio
    from vggvox.embedder import Embedder, load_model
    from vggvox.enrollment import enroll
    from vggvox.errors import VggvoxError
    from vggvox.store import VoiceprintStore
    from vggvox.stream.recognizer import Recognizer, RecognizerConfig
    from vggvox.stream.results import SpeechEnded, SpeechStarted, TurnUpdate, WindowScore
    from vggvox.voiceprints import VoiceprintSet


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vggvox' has no attribute {name!r}")
