"""The MQTT bridge's turn messages on their way out: news, never history.

A turn message (``PREFIX/SOURCE/turn``) is news for automations: one that
arrives a minute late is taken as new. So it is published (QoS 0, never
retained, so that paho never sends it again after a reconnect) only once the
broker has acknowledged the state message published with it (QoS 1), which
proves the link is live now, and only while it is at most ``MAX_AGE_S`` old.
While the broker is away, or stalled, turn messages are dropped and counted, and
each outage is logged once: when it starts, and with its count when turns flow
again. The state topics are retained and republished whole on each connect, so
what was dropped is never needed to know who is speaking.

The queue is bounded (``MAX_HELD``); paho's own queue of unacknowledged QoS 1
messages is bounded by the bridge (``max_queued_messages_set``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from vggvox_client.bridges.speaking import born

log = logging.getLogger(__name__)

MAX_AGE_S = 4.0
"""A turn message not on its way this long after its event was made is history:
dropped. A second under the 5 s that counts as stale news, for the way to the
broker and on to the subscriber."""
MAX_HELD = 64
"""Turn messages waiting for their state's acknowledgement; beyond, the oldest goes."""


def acked(info: Any) -> bool | None:
    """Whether the broker acknowledged a QoS 1 message (paho's MQTTMessageInfo):
    True, False while waiting, None if it never will on this link (refused by a full
    queue, or published while paho was not connected: paho resends it later, but a
    turn that waited for it would be stale by then)."""
    if info.rc != 0:
        return None
    return bool(info.is_published())


@dataclass
class Held:
    at: float
    """Monotonic time the event was made (``born``)."""
    topic: str
    payload: str
    gate: Any
    """The MQTTMessageInfo of the state message published with it."""


class TurnOutbox:
    """Turn messages held until the broker acknowledged their state; not thread-safe
    (the bridge calls it under its lock)."""

    def __init__(self, client: Any, max_age_s: float = MAX_AGE_S,
                 max_held: int = MAX_HELD) -> None:
        self.client, self.max_age_s, self.max_held = client, max_age_s, max_held
        self._held: deque[Held] = deque()
        self.dropped = 0
        """Turn messages dropped since the bridge started."""
        self.sent = 0
        self._outage: str | None = None
        """Why turn messages are being dropped now (logged once), None while they flow."""
        self._outage_drops = 0

    def __len__(self) -> int:
        return len(self._held)

    def put(self, topic: str, payload: str, gate: Any | None, why_not: str = "",
            ev_time: object = None) -> None:
        """Hold a turn message until ``gate`` is acknowledged; with no gate (the broker is
        away, or refused the state message) it is dropped at once, ``why_not`` saying
        why in the outage's one log line. ``ev_time``: the event's ``time``, from which
        its age is counted."""
        if gate is None:
            self.drop(1, why_not or "the broker is away")
            return
        self._held.append(Held(born(ev_time, time.time(), time.monotonic()), topic, payload,
                               gate))
        if len(self._held) > self.max_held:
            self._held.popleft()
            self.drop(1, f"more than {self.max_held} turn messages wait for the broker")

    def pump(self) -> None:
        """Publish what the broker has acknowledged the state of; drop what is too old."""
        now = time.monotonic()
        while self._held:
            h = self._held[0]
            state = acked(h.gate)
            if now - h.at > self.max_age_s or state is None:
                self._held.popleft()
                self.drop(1, f"the broker has not acknowledged for {self.max_age_s:g} s")
                continue
            if not state:
                break
            self._held.popleft()
            self.client.publish(h.topic, h.payload, qos=0, retain=False)
            self.sent += 1
            self._flowing()

    def clear(self, why: str) -> None:
        """The link is gone: what waits would be history when it is back."""
        if self._held:
            self.drop(len(self._held), why)
            self._held.clear()

    def drop(self, n: int, why: str) -> None:
        if self._outage is None:
            log.warning("turn messages are dropped, not queued, while %s (state topics are "
                        "republished when it is back; history is not replayed)", why)
            self._outage = why
        self.dropped += n
        self._outage_drops += n

    def _flowing(self) -> None:
        if self._outage is not None:
            log.info("turn messages flow again; %d were dropped while %s", self._outage_drops,
                     self._outage)
            self._outage, self._outage_drops = None, 0
