"""What the control ops use of the running daemon, each part as narrow as its use.

The daemon builds one ``Services`` (daemon.py) and hands it to ``Handlers``, which
passes each op's module only the parts it uses: the store, the embedder, a settings
section, a publish function, the live sources, a health view. No handler module
holds the daemon. What the run loop only creates later (the live sources, built by
``run``) or changes (the voiceprints' count) is read through a function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vggvox.calibration import AcceptRule
from vggvox.embedder import Embedder
from vggvox.protocol.events import Event, StatusEvent
from vggvox.settings import PipelineSettings
from vggvox.storeapi import Store
from vggvoxd.connlimit import ConnectionWatch
from vggvoxd.guard import Guard
from vggvoxd.livesources import LiveSource
from vggvoxd.rooms import Rooms
from vggvoxd.streamthread import Stream


@dataclass(frozen=True)
class LiveView:
    """The live sources, as the run loop holds them now."""

    all: Callable[[], list[LiveSource]]
    spec: str
    """The ``--source`` the daemon was started with: it names an event before any
    source exists."""

    def named(self, name: str) -> LiveSource | None:
        return next((live for live in self.all() if live.name == name), None)

    @property
    def main(self) -> Stream | None:
        """The first live source's stream: its clock dates enrollments, and it records
        a live enrollment that names no source."""
        lives = self.all()
        return lives[0].stream if lives else None


class Stage(Protocol):
    """A stage whose health ``status`` shows (a ``Guard``, the executor, the indexer)."""

    def health(self) -> dict[str, object]: ...


class Counted(Stage, Protocol):
    """The embedding stage: its health and what it has done since start."""

    windows_done: int
    compute_s: float


class SocketStage(Protocol):
    """A socket thread (events, control): its guard and its connections."""

    name: str
    guard: Guard
    connections: ConnectionWatch


@dataclass(frozen=True)
class HealthView:
    """What ``status`` reads of the stages and the rule that are not the ops' own."""

    summary: Callable[..., StatusEvent]
    """The daemon's status event: ``summary()`` for all its sources summed up,
    ``summary(live=source)`` for one."""
    describe: Callable[[AcceptRule], str]
    """A rule in words."""
    rule: AcceptRule
    """The daemon's rule, before any room moves it."""
    embedder: Counted
    search: Stage
    sockets: Callable[[], Sequence[SocketStage]]
    """The events and control sockets' threads (control is built after the handlers)."""
    store: Stage
    """The store follower (storefollow.py): whether the store answers, how fresh the
    voiceprints in memory are."""


@dataclass(frozen=True)
class Services:
    """Everything the control ops use; ``Handlers`` hands each op its part."""

    settings: PipelineSettings
    """Its ``enroll``, ``vad`` and ``unknowns`` sections."""
    store: Store
    embedder: Embedder
    rooms: Rooms
    publish: Callable[[Event], None]
    lives: LiveView
    speakers: Callable[[], int]
    """Voiceprints loaded now."""
    heard: Callable[[], dict[str, float]]
    """Enrolled speaker -> wall time a turn last named them (a copy)."""
    refresh: Callable[[], bool]
    """Read the voiceprints again if the store changed (after this daemon's own
    enrollment or removal, so that it takes effect at once): True when read."""
    reload: Callable[[], None]
    """The ``reload`` op: the voiceprints, forced, and the CURVE keys."""
    stopping: Callable[[], bool]
    health: HealthView
    node: str = ""
    """This daemon's name (the config's ``node``), for the ``status`` reply."""
