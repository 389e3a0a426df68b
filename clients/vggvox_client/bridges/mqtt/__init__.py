"""``vggvox-client mqtt``: the command. The bridge: ``bridge.py`` (the state topics and
the link), ``outbox.py`` (turn messages: news, never history), ``hass.py`` (Home
Assistant discovery); loaded on run, with paho-mqtt."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vggvox_client.bridges import Bridge

if TYPE_CHECKING:
    from vggvox_client.connection import Connection


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, metavar="HOST[:PORT]",
                   help="the MQTT broker (port 1883 unless given)")
    p.add_argument("--username", metavar="U", help="broker user name")
    p.add_argument("--password-file", type=Path, metavar="F",
                   help="file holding the broker password (never on the command line)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (the system's CAs)")
    p.add_argument("--ca-file", type=Path, metavar="F",
                   help="with TLS, trust the broker's certificate from this CA file (PEM), "
                        "e.g. a self-signed Mosquitto's; implies --tls")
    p.add_argument("--prefix", default="vggvox", help="topic prefix (default vggvox)")
    p.add_argument("--discovery-prefix", default="homeassistant", metavar="PREFIX",
                   help="Home Assistant's discovery prefix (default homeassistant)")


def run(conn: Connection, args: argparse.Namespace) -> int:
    from vggvox_client.bridges.mqtt import bridge

    return bridge.run(conn, args.broker, args.prefix, args.username, args.password_file,
                      args.tls, args.discovery_prefix, args.ca_file)


BRIDGE = Bridge(
    name="mqtt",
    help="publish who is speaking to an MQTT broker, with Home Assistant discovery (runs "
         "until stopped)",
    examples="""examples:
  vggvox-client mqtt --broker 127.0.0.1           # Mosquitto on this machine, port 1883
  vggvox-client mqtt --broker ha.local:1883 --username vggvox --password-file ~/.mqtt-pw
Publishes PREFIX/SOURCE/speaker (retained: a name, unknown, or empty while silent),
PREFIX/SOURCE/confidence, PREFIX/SOURCE/turn (JSON, with the event's time: news
only, dropped while the broker is away and never replayed; the retained state is
republished whole on each connect) and PREFIX/status (online or offline, also the
last will), and Home Assistant discovery configs, so that
sensor.vggvox_SOURCE_speaker appears by itself (removed when the source ends).
As a service (systemd/vggvox-mqtt.service) the password is a systemd credential
read from /etc/vggvox/mqtt-password.""",
    add_arguments=add_arguments, run=run)
