"""The MQTT bridge: who is speaking, per source, for Home Assistant and anything MQTT.

    vggvox-client mqtt --broker HOST[:PORT] [--username U --password-file F]
                       [--tls [--ca-file F]] [--prefix vggvox]

It subscribes to the daemon's events like any client and publishes, per source
(``SOURCE``: its name in lower case, other characters turned into ``_``):

- ``PREFIX/SOURCE/speaker``: the name, ``unknown``, or empty while silent; retained;
- ``PREFIX/SOURCE/confidence``: the turn's calibrated confidence; retained;
- ``PREFIX/SOURCE/turn``: each turn event, as JSON;
- ``PREFIX/status``: ``online`` while the daemon's heartbeats arrive, else
  ``offline`` (also the bridge's MQTT last will); retained;
- Home Assistant discovery: retained sensor configs under
  ``homeassistant/sensor/vggvox_SOURCE/{speaker,confidence}/config``, giving
  ``sensor.vggvox_SOURCE_speaker``; emptied when the source goes (a replay ends).

paho-mqtt runs the connection in its own thread and reconnects with back-off
(1 s doubling to 30 s); on each (re)connect the bridge publishes its whole
current state again, so a restarted broker loses nothing. The state is shared
by that thread and the event loop: one lock guards it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggvox import __version__
from vggvox.errors import VggvoxError
from vggvox_client.connection import Connection

log = logging.getLogger(__name__)

STALE_S = 15.0
"""No heartbeat for this long (three of the daemon's default 5 s) means it is gone."""


def topic_name(source: str) -> str:
    """A source's name made safe for a topic level: lower case, runs of anything but
    letters and digits turned into '_'."""
    return re.sub(r"[^a-z0-9]+", "_", source.lower()).strip("_") or "source"


def parse_broker(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "1883")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise VggvoxError(f"--broker must be HOST or HOST:PORT, got {spec!r}")
    return host, int(port)


@dataclass
class SourceState:
    source: str
    speaker: str = ""
    confidence: float | None = None


class Bridge:
    def __init__(self, conn: Connection, host: str, port: int, prefix: str = "vggvox",
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 discovery: str = "homeassistant", stale_s: float = STALE_S,
                 ca_file: Path | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.conn, self.prefix, self.discovery, self.stale_s = conn, prefix, discovery, stale_s
        self.host, self.port = host, port
        self.sources: dict[str, SourceState] = {}
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
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect

    # -- MQTT side (paho's thread) ----------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("connected to %s:%d; publishing the current state", self.host, self.port)
        with self._lock:
            self._publish("status", "online" if self.online else "offline")
            for state in self.sources.values():
                self._announce(state)
                self._publish_state(state)

    def _publish(self, topic: str, payload: str, retain: bool = True) -> Any:
        return self.client.publish(f"{self.prefix}/{topic}", payload, qos=1, retain=retain)

    def _config_topic(self, state: SourceState, what: str) -> str:
        return f"{self.discovery}/sensor/vggvox_{topic_name(state.source)}/{what}/config"

    def discovery_payloads(self, state: SourceState) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT sensor configs for one source, by config topic."""
        name = topic_name(state.source)
        device = {"identifiers": [f"vggvox_{name}"], "name": f"vggvox {state.source}",
                  "manufacturer": "vggvox", "model": "vggvoxd", "sw_version": __version__}
        common = {"availability_topic": f"{self.prefix}/status",
                  "payload_available": "online", "payload_not_available": "offline",
                  "device": device}
        return {
            self._config_topic(state, "speaker"): {
                **common, "name": "Speaker", "unique_id": f"vggvox_{name}_speaker",
                "default_entity_id": f"sensor.vggvox_{name}_speaker",
                "state_topic": f"{self.prefix}/{name}/speaker", "icon": "mdi:account-voice"},
            self._config_topic(state, "confidence"): {
                **common, "name": "Speaker confidence", "unique_id": f"vggvox_{name}_confidence",
                "default_entity_id": f"sensor.vggvox_{name}_confidence",
                "state_topic": f"{self.prefix}/{name}/confidence", "state_class": "measurement",
                "icon": "mdi:percent"},
        }

    def _announce(self, state: SourceState) -> None:
        for topic, payload in self.discovery_payloads(state).items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)

    def _publish_state(self, state: SourceState) -> None:
        name = topic_name(state.source)
        self._publish(f"{name}/speaker", state.speaker)
        if state.confidence is not None:
            self._publish(f"{name}/confidence", f"{state.confidence:.3f}")

    def _forget(self, state: SourceState) -> None:
        """The source is gone: its entities and retained states go too (empty payloads)."""
        for topic in self.discovery_payloads(state):
            self.client.publish(topic, "", qos=1, retain=True)
        name = topic_name(state.source)
        for what in ("speaker", "confidence"):
            self._publish(f"{name}/{what}", "")

    # -- daemon side (the caller's thread) --------------------------------------------------

    def handle(self, ev: dict[str, Any]) -> None:
        """One daemon event: update the state and publish what changed."""
        with self._lock:
            self._beat()
            source = ev["source"]
            state = self.sources.get(source)
            if ev["type"] == "status" and ev["state"] in ("finished", "stopped"):
                if state is not None and ev["state"] == "finished":
                    self._forget(self.sources.pop(source))
                if ev["state"] == "stopped":
                    self._set_online(False)
                return
            if state is None:
                state = self.sources[source] = SourceState(source)
                self._announce(state)
                self._publish_state(state)
            if ev["type"] == "turn":
                state.speaker = ev["speaker"] or ("unknown" if ev.get("unknown") else "")
                state.confidence = ev.get("confidence")
                self._publish_state(state)
                self._publish(f"{topic_name(source)}/turn", json.dumps(ev), retain=False)
            elif ev["type"] == "speech.end" and state.speaker:
                state.speaker = ""
                self._publish_state(state)

    def _beat(self) -> None:
        self._last_beat = time.monotonic()
        self._set_online(True)

    def _set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self._publish("status", "online" if online else "offline")

    def check_stale(self) -> None:
        with self._lock:
            if self.online and time.monotonic() - self._last_beat > self.stale_s:
                log.warning("no event from the daemon for %.0f s: offline", self.stale_s)
                self._set_online(False)

    def run(self, stop: threading.Event) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        sock = self.conn.subscribe(["turn", "speech.end", "status"])
        try:
            while not stop.is_set():
                ev = self.conn.receive(sock, 0.5)
                if ev is not None:
                    self.handle(ev)
                self.check_stale()
        finally:
            sock.close()
            with self._lock:
                last = self._publish("status", "offline")
            try:
                last.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):  # not connected: the last will says it
                pass
            self.client.disconnect()
            self.client.loop_stop()


def read_password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
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
