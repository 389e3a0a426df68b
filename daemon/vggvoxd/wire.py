"""The wire mapping: the library's recognizer results as the daemon's typed events.

Scores are rounded to 4 decimals on the wire; times go out in seconds on the
stream's own clock.
"""

from __future__ import annotations

from vggvox.scoring import Match
from vggvox.stream.results import Result, SpeechEnded, SpeechStarted, TurnUpdate, WindowScore
from vggvoxd.events import Event, SpeakerEvent, SpeechEndEvent, SpeechStartEvent, TurnEvent


def _top(top: list[Match]) -> list[list[object]]:
    return [[m.name, round(m.score, 4)] for m in top]


def to_events(source: str, r: Result, model: str, captured: float) -> list[Event]:
    if isinstance(r, WindowScore):
        return [SpeakerEvent(source=source, t_start=r.t_start, t_end=r.t_end,
                             speaker=r.speaker, score=round(r.score, 4), top=_top(r.top),
                             model=model, captured=captured)]
    if isinstance(r, TurnUpdate):
        return [TurnEvent(source=source, t_start=r.t_start, t_end=r.t_end, turn=r.turn,
                          speaker=r.speaker, unknown=r.unknown,
                          score=round(r.score, 4), confidence=round(r.confidence, 4),
                          top=_top(r.top), final=r.final, windows=r.windows, model=model,
                          captured=captured)]
    if isinstance(r, SpeechStarted):
        return [SpeechStartEvent(source=source, t_start=r.t_start, t_end=r.t_end)]
    if isinstance(r, SpeechEnded):
        return [SpeechEndEvent(source=source, t_start=r.t_start, t_end=r.t_end)]
    return []
