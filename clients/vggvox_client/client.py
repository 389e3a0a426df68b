"""``Client``: a running vggvoxd, from Python.

The same requests as ``vggvox-client`` (enroll, remove, speakers, status) and
the daemon's events as typed dataclasses (``vggvox.protocol.events``: the module that
encodes them), for applications that embed speaker identification::

    from vggvox_client import Client

    with Client() as daemon:
        daemon.enroll("alice", ["a1.wav", "a2.wav"])
        for event in daemon.events(["turn"]):
            if event.final:
                print(event.speaker or event.unknown, round(event.confidence, 2))

A refused request raises ``ClientError`` with the daemon's text and a ``code``
(``not_found``, ``busy``, ``voice_mismatch``, ...); no reply at all raises it
with code ``unreachable``. Replies are returned as maps without the protocol's
``ok`` field.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from vggvox.audio import load_audio
from vggvox.protocol.errors import BAD_REQUEST
from vggvox.protocol.events import TOPICS, Event
from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.requests import EnrollRequest, ListRequest, RemoveRequest, StatusRequest
from vggvox_client.connection import ClientError, Connection

ENROLL_TIMEOUT_S = 120.0
"""Longest wait for an enrollment (up to 120 s of audio is embedded first)."""


def _data(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k != "ok"}


class Client:
    """Requests to a running vggvoxd and its events. Endpoints default to the daemon's
    on this machine; ``server_key``/``key`` are CURVE key files (see the README)."""

    def __init__(self, control: str | None = None, events: str | None = None,
                 timeout: float = 10.0, server_key: Path | None = None,
                 key: Path | None = None) -> None:
        self.conn = Connection(control, events, timeout, server_key, key)
        self._subs: list[Any] = []

    def enroll(self, name: str, audio: Sequence[str | Path | np.ndarray],
               replace: bool = False, force: bool = False) -> dict[str, Any]:
        """Enroll audio files (any format and rate) or 16 kHz float arrays under ``name``;
        the reply says whether the speaker was ``added``, ``appended`` to or ``replaced``."""
        clips = [to_pcm(a if isinstance(a, np.ndarray) else load_audio(a)) for a in audio]
        request = EnrollRequest(name=name, audio=clips, replace=replace, force=force)
        return _data(self.conn.send(request, max(ENROLL_TIMEOUT_S, self.conn.timeout)))

    def remove(self, name: str) -> dict[str, Any]:
        """Remove a speaker: ``removed``, and ``erasure`` (``complete`` or ``pending``)."""
        return _data(self.conn.send(RemoveRequest(name=name)))

    def speakers(self) -> list[dict[str, Any]]:
        """Enrolled speakers: ``name``, ``embeddings``, ``seconds``, ``model``, ``updated``,
        ``last_heard`` and ``damaged`` (docs/control.md)."""
        return list(self.conn.send(ListRequest())["speakers"])

    def status(self) -> dict[str, Any]:
        """The daemon's state, model, scoring rule, stages and counters."""
        return _data(self.conn.send(StatusRequest()))

    def events(self, topics: Sequence[str] | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        """The daemon's events as they come, typed (``TurnEvent``, ``SpeakerEvent``, ...),
        from the moment of this call. Endless unless ``timeout``: then it ends after that
        many seconds without one."""
        unknown = sorted(set(topics or ()) - set(TOPICS))
        if unknown:
            raise ClientError(f"unknown topics {unknown}; known: {', '.join(TOPICS)}",
                              BAD_REQUEST)
        # Subscribed now, not on the first next(): events from here on are not missed.
        sock = self.conn.subscribe(list(topics) if topics else None)
        self._subs.append(sock)
        return self._follow(sock, timeout)

    def _follow(self, sock: Any, timeout: float | None) -> Iterator[Event]:
        try:
            last = time.monotonic()
            while timeout is None or time.monotonic() - last < timeout:
                got = self.conn.receive_event(sock, 0.2)
                if got is not None:
                    last = time.monotonic()
                    yield got.event
        finally:
            sock.close()
            if sock in self._subs:
                self._subs.remove(sock)

    def close(self) -> None:
        for sock in self._subs:
            sock.close()
        self._subs.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
