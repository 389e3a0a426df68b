"""Every event carries the daemon's ``node`` (config key ``node``; null: the host name)."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from vggvox.errors import ConfigError
from vggvox.protocol.events import SpeechStartEvent, StatusEvent, decode, encode, from_wire
from vggvoxd import config
from vggvoxd.nodename import host_node
from vggvoxd.publisher import Publisher


def test_node_defaults_to_the_host_name() -> None:
    settings = config.parse({})
    assert settings.node is None and settings.node_name == host_node()
    assert config.parse({"node": "hall-2.b_x"}).node_name == "hall-2.b_x"


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "é", 3, ["a"], "a/b"])
def test_a_bad_node_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="'node' must be 1 to 64 letters"):
        config.parse({"node": value}, "f.yaml")


def test_an_event_without_node_still_decodes() -> None:
    """An older daemon's event: no ``node`` field; the typed class gives ``""``."""
    frames = encode(StatusEvent(source="mic", t_start=0, t_end=0, state="lost"), 3)
    payload = msgpack.unpackb(frames[1])
    del payload["node"]
    received = from_wire([frames[0], msgpack.packb(payload)])
    assert received.event.node == "" and received.seq == 3


def test_the_publisher_sets_node_on_every_event() -> None:
    endpoint = f"inproc://node-{id(object())}"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    pub = Publisher(endpoint, node="kitchen-pi")
    pub.start()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.connect(endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        got: list[str] = []
        for _ in range(200):  # a slow joiner: publish until the subscription is seen
            pub.publish(SpeechStartEvent(source="mic", t_start=0, t_end=0, node="forged"))
            if sub.poll(50):
                got.append(decode(sub.recv_multipart())["node"])
                break
        assert got == ["kitchen-pi"]
    finally:
        sub.close(0)
        pub.stop()
