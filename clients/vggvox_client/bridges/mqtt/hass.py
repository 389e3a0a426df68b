"""Home Assistant's MQTT discovery configs for one source of the bridge (``mqtt.py``).

Two retained sensor configs per source, ``DISCOVERY/sensor/vggvox_SLUG/{speaker,
confidence}/config``, so that ``sensor.vggvox_SLUG_speaker`` and its confidence
appear by themselves; an empty retained payload on the same topics removes them.
``SLUG`` is ``vggvox.slug.slug`` of the source's name. Every option used is one
Home Assistant documents for an MQTT sensor (tests/test_mqtt.py checks).
"""

from __future__ import annotations

from typing import Any

from vggvox import __version__

WHATS = ("speaker", "confidence")


def config_topic(discovery: str, name: str, what: str) -> str:
    return f"{discovery}/sensor/vggvox_{name}/{what}/config"


def sensor_configs(prefix: str, discovery: str, name: str, source: str
                   ) -> dict[str, dict[str, Any]]:
    """The configs of the source ``source`` (slug ``name``), by config topic."""
    device = {"identifiers": [f"vggvox_{name}"], "name": f"vggvox {source}",
              "manufacturer": "vggvox", "model": "vggvoxd", "sw_version": __version__}
    common = {"availability_topic": f"{prefix}/status",
              "payload_available": "online", "payload_not_available": "offline",
              "device": device}
    return {
        config_topic(discovery, name, "speaker"): {
            **common, "name": "Speaker", "unique_id": f"vggvox_{name}_speaker",
            "default_entity_id": f"sensor.vggvox_{name}_speaker",
            "state_topic": f"{prefix}/{name}/speaker", "icon": "mdi:account-voice"},
        config_topic(discovery, name, "confidence"): {
            **common, "name": "Speaker confidence", "unique_id": f"vggvox_{name}_confidence",
            "default_entity_id": f"sensor.vggvox_{name}_confidence",
            "state_topic": f"{prefix}/{name}/confidence", "state_class": "measurement",
            "icon": "mdi:percent"},
    }
