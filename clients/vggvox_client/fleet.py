"""Events through a hub (``vggvox-client hub``): which subscriptions are a fleet's.

A hub's first message to each subscriber is ``HUB_WELCOME`` (one frame); a daemon
never sends it. A socket that got it is a fleet's, and from then on each event's
source is named ``NODE/SOURCE`` (``kitchen-pi/mic``): two daemons may both have a
``mic``, and every bridge keys its state, its rows and its MQTT topics by source.
A daemon's own subscribers see the plain names, as before.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Any

import zmq

from vggvox.protocol.events import HUB_WELCOME, Received

_FLEET: weakref.WeakSet[zmq.Socket[bytes]] = weakref.WeakSet()
"""The subscriptions that a hub welcomed."""


def is_fleet(sock: zmq.Socket[Any]) -> bool:
    return sock in _FLEET


def next_frames(sock: zmq.Socket[Any], timeout: float) -> list[bytes] | None:
    """The next event's frames within ``timeout`` seconds (None: none came); a hub's
    welcome is noted, not returned."""
    deadline = time.monotonic() + timeout
    while sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        frames = sock.recv_multipart()
        if frames != [HUB_WELCOME]:
            return frames
        _FLEET.add(sock)
    return None


def qualified(node: object, source: str) -> str:
    return f"{node}/{source}" if node else source


def qualify(sock: zmq.Socket[Any], received: Received) -> Received:
    if sock not in _FLEET:
        return received
    ev = received.event
    return dataclasses.replace(received, event=dataclasses.replace(
        ev, source=qualified(ev.node, ev.source)))


def qualify_map(sock: zmq.Socket[Any], payload: dict[str, Any]) -> dict[str, Any]:
    if sock in _FLEET:
        payload["source"] = qualified(payload.get("node"), str(payload.get("source")))
    return payload


def format_hub_status(reply: dict[str, Any]) -> str:
    """``vggvox-client status`` through a hub: each daemon it hears, in words."""
    daemons = reply.get("daemons") or []
    lines = [f"hub: {len(daemons)} daemons, {reply.get('subscribers', 0)} subscriber "
             f"connections, {reply.get('forwarded', 0)} events forwarded, "
             f"{reply.get('dropped', 0)} dropped"]
    for d in daemons:
        age = d.get("heartbeat_age_s")
        beat = "no heartbeat yet" if age is None else f"last heartbeat {age:.1f} s ago"
        link = "connected" if d.get("connected") else "link down"
        sources = ", ".join(f"{name} {s.get('state')}"
                            for name, s in (d.get("sources") or {}).items()) or "none heard"
        lines.append(f"  {d.get('node') or '?':16s} {d.get('endpoint')}  {link}, {beat}; "
                     f"sources: {sources}")
    return "\n".join(lines)
