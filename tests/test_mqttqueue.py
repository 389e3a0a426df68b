"""The MQTT bridge's turn outbox ages a turn from when its event was made, not from
when it reached the bridge: a backlog that arrives late is history too. (The whole
bridge through real outages: tests/test_mqtt_outage.py.)"""

from __future__ import annotations

import time
from typing import Any

from vggvox_client.bridges.mqtt.outbox import MAX_AGE_S, TurnOutbox
from vggvox_client.bridges.speaking import MAX_SKEW_S, born


class Gate:
    """An acknowledged state message (paho's MQTTMessageInfo, as far as the outbox asks)."""

    rc = 0

    def is_published(self) -> bool:
        return True


class Client:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def publish(self, topic: str, payload: str, **kw: Any) -> None:
        self.sent.append(payload)


def test_an_event_is_aged_from_its_time_when_that_can_be_trusted() -> None:
    assert born(100.0, now_wall=103.0, now_mono=50.0) == 47.0  # made 3 s ago
    assert born(103.0 + MAX_SKEW_S / 2, 103.0, 50.0) == 50.0  # a little ahead: now
    assert born(103.0 + 2 * MAX_SKEW_S, 103.0, 50.0) == 50.0  # another clock: arrival
    assert born(None, 103.0, 50.0) == born("x", 103.0, 50.0) == 50.0


def test_a_turn_that_reaches_the_bridge_late_is_dropped_not_sent() -> None:
    client = Client()
    box = TurnOutbox(client)
    now = time.time()
    box.put("t", "late", Gate(), ev_time=now - MAX_AGE_S - 0.5)  # a backlog's turn
    box.put("t", "fresh", Gate(), ev_time=now)
    box.pump()
    assert client.sent == ["fresh"] and box.dropped == 1
    box.put("t", "no time", Gate())  # without a time: from its arrival
    box.pump()
    assert client.sent == ["fresh", "no time"]
