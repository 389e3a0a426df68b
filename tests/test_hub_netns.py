"""A fleet across real network boundaries: two daemons and a hub, each in a network
namespace of its own, joined by veth pairs on private addresses this test makes,
CURVE on every link. Both daemons' events (with their nodes) reach a subscriber
through the hub; one daemon's link is cut and restored, and its events come back;
``status`` through the hub lists both daemons with their heartbeats.

Needs root and ``ip netns`` (iproute2); skipped otherwise. The names of the
namespaces and links, and the addresses, include this process's id, so that two
xdist workers never meet; everything is removed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_proc import DaemonProcess, stop_process

from vggvox.protocol.keys import keygen
from vggvox_client.cli import main
from vggvox_client.connection import Connection

PID = os.getpid()
NET = f"10.{200 + (PID >> 12) % 50}.{(PID >> 4) % 256}.{(PID % 16) * 16}"
"""A /28 of this process's own: three /30 links (daemon a, daemon b, this process) to
the hub's namespace."""
EVENTS_PORT, HUB_PORT, HUB_CONTROL_PORT = 5560, 5570, 5571

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 (ip netns)")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def addr(link: int, host: int) -> str:
    """Host 1 or 2 of the link-th /30 in NET."""
    a, b, c, d = NET.split(".")
    return f"{a}.{b}.{c}.{int(d) + 4 * link + host}"


@dataclass
class Net:
    ns: dict[str, str]
    veths: list[str]

    def run_in(self, where: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[where], *argv]


def make_net() -> Net:
    net = Net({w: f"vgx{PID}{w}" for w in ("a", "b", "h")}, [])
    for name in net.ns.values():
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
    # link 0: daemon a <-> hub; 1: daemon b <-> hub; 2: this process <-> hub.
    for link, where in enumerate(("a", "b", "")):
        near, far = f"vg{where or 'r'}{PID}", f"vg{where or 'r'}{PID}h"
        ip("link", "add", near, "type", "veth", "peer", "name", far)
        net.veths.append(near)
        ip("link", "set", far, "netns", net.ns["h"])
        ip("-n", net.ns["h"], "addr", "add", f"{addr(link, 2)}/30", "dev", far)
        ip("-n", net.ns["h"], "link", "set", far, "up")
        if where:
            ip("link", "set", near, "netns", net.ns[where])
        prefix = ["-n", net.ns[where]] if where else []
        ip(*prefix, "addr", "add", f"{addr(link, 1)}/30", "dev", near)
        ip(*prefix, "link", "set", near, "up")
    return net


def remove_net(net: Net) -> None:
    for name in net.ns.values():  # its veth ends go with it, and their peers
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    for veth in net.veths:  # the one left in this namespace, if its peer did not take it
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10)


def daemon(tmp: Path, net: Net, keys: Path, where: str, link: int) -> DaemonProcess:
    tmp.mkdir()
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "node": f"node-{where}", "status": {"interval_s": 0.3},
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "readers": str(keys / "readers")}}))
    events = f"tcp://{addr(link, 1)}:{EVENTS_PORT}"
    d = DaemonProcess(tmp, args=["--config", str(cfg), "--events", events])
    d.argv = net.run_in(where, d.argv)
    d.conn = Connection(d.conn.control, events, 10, keys / "vggvoxd.key",
                        keys / "admins/alice.key_secret")
    return d


def hub_argv(net: Net, keys: Path) -> list[str]:
    return net.run_in("h", [
        sys.executable, "-m", "vggvox_client.cli", "hub",
        "--daemon", f"tcp://{addr(0, 1)}:{EVENTS_PORT}",
        "--daemon", f"tcp://{addr(1, 1)}:{EVENTS_PORT}",
        "--daemon-key", str(keys / "vggvoxd.key"),
        "--hub-key", str(keys / "readers/hub.key_secret"),
        "--subscribers", str(keys / "subs"),
        "--listen", f"tcp://{addr(2, 2)}:{HUB_PORT}",
        "--listen-control", f"tcp://{addr(2, 2)}:{HUB_CONTROL_PORT}"])


@dataclass
class Fleet:
    net: Net
    conn: Connection
    daemons: list[DaemonProcess]
    keys: tuple[Path, Path]
    """The hub's public key and a subscriber's secret one."""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    keys = tmp / "keys"
    for folder, name in ((keys, "vggvoxd"), (keys / "admins", "alice"),
                         (keys / "readers", "hub"), (keys / "subs", "carol")):
        keygen(folder, name)
    net = make_net()
    hub: subprocess.Popen[bytes] | None = None
    daemons: list[DaemonProcess] = []
    try:
        daemons = [daemon(tmp / w, net, keys, w, i) for i, w in enumerate(("a", "b"))]
        starts = [threading.Thread(target=d.start, kwargs={"timeout": 60}) for d in daemons]
        for t in starts:
            t.start()
        hub = subprocess.Popen(hub_argv(net, keys), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        for t in starts:
            t.join(70)
        assert all(d.proc and d.proc.poll() is None for d in daemons), daemons[0].output()
        assert hub.poll() is None, stop_process(hub)
        client_keys = keys / "readers/hub.key", keys / "subs/carol.key_secret"
        conn = Connection(f"tcp://{addr(2, 2)}:{HUB_CONTROL_PORT}",
                          f"tcp://{addr(2, 2)}:{HUB_PORT}", 5, *client_keys)
        yield Fleet(net, conn, daemons, client_keys)
    finally:
        if hub is not None:
            print(stop_process(hub))
        for d in daemons:
            if d.proc is not None:
                d.stop()
        remove_net(net)


def nodes_heard(conn: Connection, sock: Any, seconds: float) -> dict[str, float]:
    """Node -> when its latest event came (monotonic), over ``seconds``."""
    heard: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = conn.receive_event(sock, min(0.2, max(0.0, deadline - time.monotonic())))
        if got is not None:
            ev = got.event
            assert ev.source == f"{ev.node}/stdin", ev  # a hub's: NODE/SOURCE
            heard[ev.node] = time.monotonic()
    return heard


def wait_for(conn: Connection, sock: Any, node: str, seconds: float) -> float | None:
    """Seconds until an event of ``node`` comes, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        got = conn.receive_event(sock, 0.2)
        if got is not None and got.event.node == node:
            return time.monotonic() - t0
    return None


def test_a_fleets_events_come_through_the_hub_and_come_back_after_a_cut(fleet: Fleet) -> None:
    conn = fleet.conn
    sock = conn.subscribe(["status"])
    try:
        assert wait_for(conn, sock, "node-a", 30) is not None, "no event of node-a"
        assert wait_for(conn, sock, "node-b", 5) is not None, "no event of node-b"
        reply = conn.request("status")
        by_node = {d["node"]: d for d in reply["daemons"]}
        assert set(by_node) == {"node-a", "node-b"} and reply["hub"]
        for d in by_node.values():
            assert d["connected"] and d["heartbeat_age_s"] < 2 and "stdin" in d["sources"]
        assert {"node-a/stdin", "node-b/stdin"} <= set(reply["sources"])

        ip("-n", fleet.net.ns["a"], "link", "set", fleet.net.veths[0], "down")
        time.sleep(0.5)  # what was on its way
        nodes_heard(conn, sock, 0.1)
        heard = nodes_heard(conn, sock, 3.5)
        assert "node-a" not in heard and "node-b" in heard
        cut = {d["node"]: d for d in conn.request("status")["daemons"]}["node-a"]
        assert cut["heartbeat_age_s"] > 3.0

        ip("-n", fleet.net.ns["a"], "link", "set", fleet.net.veths[0], "up")
        back = wait_for(conn, sock, "node-a", 15)
        assert back is not None, "node-a's events did not come back through the hub"
        print(f"node-a's events came back {back:.2f} s after its link")
        again = {d["node"]: d for d in conn.request("status")["daemons"]}
        assert again["node-a"]["connected"] and again["node-a"]["heartbeat_age_s"] < 2
    finally:
        sock.close(0)


def test_the_clients_commands_work_through_the_hub(fleet: Fleet, capsys) -> None:
    """``status`` and ``listen`` as against a daemon: every daemon, and NODE/SOURCE."""
    c = fleet.conn
    where = ["--control", c.control, "--events", c.events, "--server-key", str(fleet.keys[0]),
             "--key", str(fleet.keys[1])]
    assert main([*where, "listen", "--json", "--count", "4", "--seconds", "10"]) == 0
    sources = {json.loads(line)["source"] for line in capsys.readouterr().out.splitlines()}
    assert sources and sources <= {"node-a/stdin", "node-b/stdin"}
    assert main([*where, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hub: 2 daemons") and "node-a" in out and "node-b" in out
    assert "connected, last heartbeat" in out
    assert main([*where, "remove", "alice"]) == 2
    assert "this is a hub" in capsys.readouterr().err
