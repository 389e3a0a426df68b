"""The bridges through a hub, as through a daemon: ``web``, ``mqtt`` and ``watch``.

One real daemon (node ``kitchen``, source ``stdin``, one speaker enrolled) and one
hub in this process (loopback, no CURVE: tests/test_hub.py and test_hub_netns.py
test the keys) are shared by the module. Each bridge runs as a real process
pointed at the hub's events and control endpoints; once the hub counts it as a
subscriber, an enrolled speaker's clip is written to the daemon's stdin, and the
bridge must show the speaker under ``kitchen/stdin`` (its MQTT slug
``kitchen_stdin``). An enrollment through the hub is refused with ``not_on_hub``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from daemon_proc import DaemonProcess, free_port, stop_process
from hubkit import fleet_daemon, running_hub, until
from speakers_fixture import conversation
from test_web import fetch, start_web, stop_web

from vggvox.audio import load_audio, to_int16
from vggvox.slug import slug
from vggvox_client.bridges.watch.view import WatchState, render
from vggvox_client.connection import Connection
from vggvox_client.enroll import enroll
from vggvox_client.hubloop import HubLoop

NODE, SOURCE = "kitchen", "kitchen/stdin"


@dataclass
class Fleet:
    daemon: DaemonProcess
    hub: HubLoop
    conn: Connection
    """To the hub: its events and control endpoints."""
    speaker: str
    clip: Path
    tmp: Path

    def speak(self) -> None:
        """The enrolled speaker's clip, then 1.5 s of silence (the turn ends), written to
        the daemon's stdin (left open for the next test)."""
        x = load_audio(self.clip)
        data = to_int16(np.concatenate([x, np.zeros(24000, np.float32)])).tobytes()
        writer = self.daemon.feed(data, close=False)
        writer.join(timeout=10)
        assert not writer.is_alive(), f"the daemon did not read it: {self.daemon.output()}"

    def subscribed(self, before: int) -> None:
        """Until the hub counts one more subscriber than ``before`` (the bridge's)."""
        until("the bridge's subscription at the hub",
              lambda: self.hub.counts.subscribers > before)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("hubbridges")
    convo = conversation(tmp)
    speaker = sorted(convo.enroll)[0]
    d = fleet_daemon(tmp, NODE)
    try:
        enroll(d.conn, speaker, convo.enroll[speaker], None, False, 16 << 20)
        events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        with running_hub("--daemon", d.conn.events, "--listen", events,
                         "--listen-control", control) as loop:
            conn = Connection(control, events, timeout=5)
            until("the daemon's heartbeat at the hub",
                  lambda: conn.request("status")["daemons"][0]["node"] == NODE)
            yield Fleet(d, loop, conn, speaker, convo.enroll[speaker][0], tmp)
    finally:
        d.stop()


def test_the_web_page_shows_node_and_source_and_refuses_an_enrollment(
        fleet: Fleet, tmp_path: Path) -> None:
    before = fleet.hub.counts.subscribers
    port = free_port()
    web = start_web(SimpleNamespace(conn=fleet.conn, tmp=tmp_path), port)  # type: ignore
    cookie, host = web.cookie(), f"127.0.0.1:{port}"
    try:
        fleet.subscribed(before)
        fleet.speak()

        def heard() -> bool:
            code, body, _ = fetch(f"{web.url}/state", Cookie=cookie, Host=host)
            assert code == 200, body
            turns = json.loads(body)["sources"].get(SOURCE, {}).get("turns", {})
            return any(t[2] == fleet.speaker for t in turns.values())
        until(f"{fleet.speaker}'s turn on {SOURCE} in /state", heard, timeout=30)

        code, body, _ = fetch(f"{web.url}/enroll?name=newcomer", fleet.clip.read_bytes(),
                              Origin=web.url, X_CSRF_Token=web.csrf, Cookie=cookie, Host=host)
        reply = json.loads(body)
        assert 400 <= code < 500 and reply["code"] == "not_on_hub", (code, reply)
        assert "this is a hub" in reply["error"] and NODE in reply["error"], reply
        code, body, _ = fetch(f"{web.url}/state", Cookie=cookie, Host=host)  # still up
        assert code == 200 and SOURCE in json.loads(body)["sources"], body
        assert web.proc.poll() is None
    finally:
        out = stop_web(web)
    assert "Traceback" not in out, out
    assert "newcomer" not in [s["name"] for s in fleet.daemon.conn.request("list")["speakers"]]


def test_mqtt_publishes_the_speaker_on_the_node_s_topic(fleet: Fleet, tmp_path: Path) -> None:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is needed (make test installs it)")
    from test_mqtt import CLIENT, Broker, Subscriber, check_discovery

    name = slug(SOURCE)
    assert name == "kitchen_stdin"  # '/' is a run of other characters: one '_'
    broker = Broker(tmp_path)
    broker.start()
    sub = Subscriber(broker.port)
    before = fleet.hub.counts.subscribers
    bridge = subprocess.Popen([str(CLIENT), "--control", fleet.conn.control, "--events",
                               fleet.conn.events, "mqtt", "--broker",
                               f"127.0.0.1:{broker.port}"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        sub.wait_for("vggvox/status", "online")
        config: dict[str, Any] = json.loads(sub.wait_for(
            f"homeassistant/sensor/vggvox_{name}/speaker/config"))
        check_discovery(config, name, "speaker")
        assert config["device"]["name"] == f"vggvox {SOURCE}"  # the node, in Home Assistant
        fleet.subscribed(before)
        fleet.speak()
        sub.wait_for(f"vggvox/{name}/speaker", fleet.speaker, timeout=30)
        turn = json.loads(sub.wait_for(f"vggvox/{name}/turn"))
        assert turn["source"] == SOURCE and turn["node"] == NODE, turn
    finally:
        out = stop_process(bridge)
        sub.close()
        broker.kill()
    assert bridge.returncode == 0 and "Traceback" not in out, out


def test_watch_names_the_hub_s_daemons_and_the_node_s_sources(fleet: Fleet) -> None:
    from rich.console import Console

    w = WatchState()
    sock = fleet.conn.subscribe(["status"])
    try:
        deadline = time.monotonic() + 10
        while SOURCE not in w.sources:
            assert time.monotonic() < deadline, "no status event through the hub"
            ev = fleet.conn.receive_event(sock, 0.5)
            if ev is not None:
                w.event(ev)
    finally:
        sock.close(0)
    w.status(fleet.conn.request("status"))
    w.speakers(fleet.conn.request("list"))
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(render(w))
    screen = console.export_text()
    assert f"hub: 1 daemon (1 connected): {NODE}" in screen, screen
    assert "model ?" not in screen and SOURCE in screen, screen
