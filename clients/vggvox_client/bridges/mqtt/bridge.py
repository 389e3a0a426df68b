"""The MQTT bridge: who is speaking, per source, for Home Assistant and anything MQTT.

    vggvox-client mqtt --broker HOST[:PORT] [--username U --password-file F]
                       [--tls [--ca-file F]] [--prefix vggvox]

It subscribes to the daemon's events like any client and publishes, per source
(``SOURCE``: ``vggvox.slug.slug`` of its name: lower case, other characters
turned into ``_``), from the bridges' shared model of who is speaking
(``bridges/speaking.py``):

- ``PREFIX/SOURCE/speaker``: the name, ``unknown``, or empty while silent; retained;
- ``PREFIX/SOURCE/confidence``: the turn's calibrated confidence; retained;
- ``PREFIX/SOURCE/turn``: each turn event, as JSON (its ``time``: when the daemon
  published it, Unix seconds); news only, never replayed (``outbox.py``);
- ``PREFIX/status``: ``online`` while the daemon's heartbeats arrive, else
  ``offline`` (also the bridge's MQTT last will); retained;
- Home Assistant discovery: retained sensor configs under
  ``homeassistant/sensor/vggvox_SOURCE/{speaker,confidence}/config``, giving
  ``sensor.vggvox_SOURCE_speaker``; emptied when the source goes (a replay ends,
  or is abandoned), unless another live source has the same slug.

paho-mqtt runs the connection in its own thread and reconnects with back-off
(1 s doubling to 10 s). Its callbacks only set flags: everything else runs in
the event loop's thread (``tick``), so no lock is ever taken inside paho's. On
each (re)connect the bridge publishes its whole current state again, a moment
after paho has resent what it held, so a restarted broker loses nothing and
the fresh state is the last word.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from vggvox.errors import VggvoxError
from vggvox.protocol.events import (
    Received,
    SpeechEndEvent,
    StatusEvent,
    TurnEvent,
    from_payload,
)
from vggvox.slug import slug
from vggvox_client.bridges.mqtt.hass import WHATS, config_topic, sensor_configs
from vggvox_client.bridges.mqtt.outbox import TurnOutbox
from vggvox_client.bridges.speaking import SPEAKING_TOPICS, Source, SpeakingState
from vggvox_client.connection import Connection

log = logging.getLogger(__name__)

STALE_S = 15.0
"""No heartbeat for this long (three of the daemon's default 5 s) means it is gone."""
MAX_QUEUED = 256
"""paho's bound on QoS 1 messages not yet acknowledged; beyond it a state message is
refused and the whole state republished once there is room."""
RESYNC_DELAY_S = 0.2
"""After a connect, the state is republished this much later: after paho's resends
of the messages it held, which must not be the last word."""

topic_name = slug
"""The old name of ``vggvox.slug.slug`` here."""


def parse_broker(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "1883")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VggvoxError(f"--broker must be HOST or HOST:PORT, got {spec!r}")
    return host, int(port)


def said(src: Source | None) -> str:
    """A source's speaker topic: the name, ``unknown`` for a voice nobody enrolled, or
    empty while silent (and for a turn of neither)."""
    if src is None:
        return ""
    return src.speaker or ("unknown" if src.unknown else "")


class Bridge:
    def __init__(self, conn: Connection, host: str, port: int, prefix: str = "vggvox",
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 discovery: str = "homeassistant", stale_s: float = STALE_S,
                 ca_file: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.conn, self.prefix, self.discovery, self.stale_s = conn, prefix, discovery, stale_s
        self.host, self.port = host, port
        self.state = SpeakingState()
        """Who is speaking, per source: the bridges' shared model."""
        self.announced: dict[str, str] = {}
        """The sources whose entities are published, and their slugs (in order of start)."""
        self.online = False
        self._last_beat = 0.0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"vggvox-bridge-{prefix}")
        self.client.will_set(f"{prefix}/status", "offline", qos=1, retain=True)
        if username:
            self.client.username_pw_set(username, password)
        if tls:  # the system's CAs, or the broker's own CA (a self-signed Mosquitto)
            self.client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self._queue_full = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.turns = TurnOutbox(self.client)
        # Set by paho's thread, read by the loop's (single assignments: no lock).
        self._link_up = False
        self._connects = 0
        # The loop's own view of the link.
        self._seen_connects = 0
        self._was_up = False
        self._resync_at: float | None = None
        self._forgotten: set[str] = set()
        """Slugs whose entities must be emptied at the next resync (ended while away)."""

    # -- paho's thread: flags only -----------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        self._connects += 1
        self._link_up = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._link_up = False

    # -- the loop's thread -------------------------------------------------------------------

    def tick(self) -> None:
        """Follow the link (outage, connect, resync), send acknowledged turns, check the
        daemon's heartbeat."""
        with self._lock:
            now = time.monotonic()
            if self._was_up and not self._link_up:
                log.warning("lost the broker %s:%d; reconnecting", self.host, self.port)
                self.turns.clear("the broker is away")
            if self._connects != self._seen_connects and self._link_up:
                self._seen_connects = self._connects
                self._resync_at = now + RESYNC_DELAY_S
            self._was_up = self._link_up
            if self._resync_at is not None and now >= self._resync_at and self._link_up:
                self._resync_at = None
                self._resync()
            self.turns.pump()
            if self.online and now - self._last_beat > self.stale_s:
                log.warning("no event from the daemon for %.0f s: offline", self.stale_s)
                self._set_online(False)

    def _resync(self) -> None:
        log.info("connected to %s:%d; publishing the current state", self.host, self.port)
        self._publish("status", "online" if self.online else "offline")
        gone = self._forgotten - set(self.announced.values())
        self._forgotten.clear()
        for name in sorted(gone):
            self._empty(name)  # back in _forgotten if it cannot go now either
        for source in self.announced:
            self._announce(source)
            self._publish_state(source)

    def _publish(self, topic: str, payload: str, retain: bool = True) -> Any | None:
        """A QoS 1 message under the prefix; None if it was not queued (no link, or paho's
        queue is full): the whole state goes again once the link allows."""
        return self._send(f"{self.prefix}/{topic}", payload, retain)

    def _send(self, topic: str, payload: str, retain: bool = True) -> Any | None:
        if not self._link_up:
            return None  # the state is republished whole at the next connect
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == self._queue_full:  # the broker is stalled
            if self._resync_at is None:
                self._resync_at = time.monotonic() + 1.0
            return None
        return info

    def discovery_payloads(self, source: str) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT sensor configs for one source, by config topic."""
        return sensor_configs(self.prefix, self.discovery, slug(source), source)

    def _announce(self, source: str) -> None:
        self._forgotten.discard(slug(source))
        for topic, payload in self.discovery_payloads(source).items():
            self._send(topic, json.dumps(payload))

    def _publish_state(self, source: str) -> Any | None:
        """Its retained state, from the model; the info of the last message (a turn
        waits for it)."""
        src = self.state.sources.get(source)
        info = self._publish(f"{slug(source)}/speaker", said(src))
        if src is not None and src.confidence is not None:
            info = self._publish(f"{slug(source)}/confidence", f"{src.confidence:.3f}")
        return info

    def _empty(self, name: str) -> bool:
        """A slug's entities and retained states go (empty retained payloads); False if
        they could not be sent now (they go at the next resync)."""
        sent = [self._send(config_topic(self.discovery, name, what), "") is not None
                for what in WHATS]
        for what in WHATS:
            self._publish(f"{name}/{what}", "")
        if not all(sent):
            self._forgotten.add(name)
        return all(sent)

    def _end(self, source: str) -> None:
        """A source finished: its entities go, unless a live source shares its slug
        (two replays whose labels clean to one name): then that one's state is shown."""
        name = self.announced.pop(source, None)
        self.state.forget(source)  # nothing of it follows 'finished'
        if name is None:
            return
        others = [s for s, n in self.announced.items() if n == name]
        if others:
            log.info("source %r ended; its topics stay, %r uses them too", source, others[-1])
            self._publish_state(others[-1])
        else:
            self._empty(name)

    def _start(self, source: str) -> None:
        name = slug(source)
        others = [s for s, n in self.announced.items() if n == name]
        self.announced[source] = name
        if others:
            log.warning("sources %r and %r share the MQTT topics %s/%s/...: their states "
                        "overwrite each other until one ends", others[0], source,
                        self.prefix, name)
        self._announce(source)
        self._publish_state(source)

    def handle(self, ev: Received | dict[str, Any]) -> None:
        """One daemon event (typed, or a decoded map): update the model and publish what
        changed."""
        received = ev if isinstance(ev, Received) else from_payload(ev)
        event, source = received.event, received.event.source
        with self._lock:
            self._beat()
            if isinstance(event, StatusEvent) and event.state in ("finished", "stopped"):
                self.state.apply(received)
                if event.state == "finished":
                    self._end(source)
                else:
                    self._set_online(False)
                return
            if source not in self.announced:
                self._start(source)  # announced silent, as the model had it before this
            was = said(self.state.sources.get(source))
            self.state.apply(received)
            if isinstance(event, TurnEvent):
                gate = self._publish_state(source)
                self.turns.put(f"{self.prefix}/{slug(source)}/turn",
                               json.dumps(event.payload(received.seq)), gate,
                               "the broker is away" if not self._link_up else
                               "the broker's queue is full", event.time)
            elif isinstance(event, SpeechEndEvent) and was:
                self._publish_state(source)

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        self._set_online(True)

    def _set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self._publish("status", "online" if online else "offline")

    def run(self, stop: threading.Event) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        sock = self.conn.subscribe(list(SPEAKING_TOPICS))
        try:
            while not stop.is_set():
                # Held turns wait for acknowledgements that come within milliseconds:
                # look again soon while any wait (and a link is there to bring them).
                soon = len(self.turns) or self._resync_at is not None
                wait = 0.02 if soon and self._link_up else 0.5
                ev = self.conn.receive_event(sock, wait)
                if ev is not None:
                    self.handle(ev)
                self.tick()
        finally:
            sock.close()
            with self._lock:
                last = self._publish("status", "offline")
            try:
                if last is not None:
                    last.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):  # not connected: the last will says it
                pass
            self.client.disconnect()
            self.client.loop_stop()


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:  # blank: no password (the service's credential when none is configured)
        return path.read_text().strip() or None
    except OSError as e:
        raise VggvoxError(f"--password-file {path}: cannot read it: {e.strerror}") from None


def run(conn: Connection, broker: str, prefix: str, username: str | None,
        password_file: Path | None, tls: bool, discovery: str,
        ca_file: Path | None = None) -> int:
    """``vggvox-client mqtt``: bridge until SIGTERM or Ctrl-C (exit 0)."""
    import signal

    host, port = parse_broker(broker)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_/-]*", prefix) or prefix.endswith("/"):
        raise VggvoxError(f"--prefix must be letters, digits, '_', '-' and '/', got {prefix!r}")
    if ca_file is not None and not ca_file.is_file():
        raise VggvoxError(f"--ca-file {ca_file}: no such file")
    bridge = Bridge(conn, host, port, prefix, username, read_password(password_file),
                    tls or ca_file is not None, discovery, ca_file=ca_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    log.info("bridging %s to mqtt://%s:%d under %s/", conn.events, host, port, prefix)
    bridge.run(stop)
    return 0
