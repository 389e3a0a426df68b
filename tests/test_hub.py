"""``vggvox-client hub`` in this process, on loopback: its limits and its ``status``.

A stand-in daemon (a PUB socket with a CURVE key, sending real encoded events)
feeds a hub; subscribers with and without known keys connect to it. The hub across
real network namespaces, with real daemons: tests/test_hub_netns.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth
from hubkit import running_hub
from pgserver import free_port
from zmq.auth.thread import ThreadAuthenticator

from vggvox.errors import VggvoxError
from vggvox.protocol.events import StatusEvent, TurnEvent, encode
from vggvox.protocol.keys import keygen
from vggvox.protocol.requests import EnrollRequest
from vggvox_client import hub, hubloop
from vggvox_client.cli import build_parser
from vggvox_client.connection import ClientError, Connection
from vggvox_client.hubloop import HubLoop


@dataclass
class Rig:
    keys: Path
    pub: zmq.Socket
    loop: HubLoop
    events: str
    control: str

    def conn(self, who: str = "sub", timeout: float = 5) -> Connection:
        return Connection(self.control, self.events, timeout, self.keys / "hub.key",
                          self.keys / f"{who}.key_secret")

    def send(self, event: object, seq: int = 1) -> None:
        self.pub.send_multipart(encode(event, seq))  # type: ignore[arg-type]


def _stand_in_daemon(ctx: zmq.Context, keys: Path, endpoint: str) -> zmq.Socket:
    """A PUB socket as a CURVE daemon's: it admits the hub's key only (readers)."""
    public, secret = zmq.auth.load_certificate(keys / "vggvoxd.key_secret")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.curve_server, pub.curve_publickey, pub.curve_secretkey = True, public, secret
    pub.zap_domain = b"daemon"
    pub.bind(endpoint)
    return pub


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    keys = tmp_path_factory.mktemp("hubkeys")
    for folder, name in ((keys, "vggvoxd"), (keys, "hub"), (keys / "subs", "sub"),
                         (keys / "subs", "sub2"), (keys, "stranger")):
        keygen(folder, name)
        if folder != keys:
            (keys / f"{name}.key_secret").symlink_to(folder / f"{name}.key_secret")
    ctx = zmq.Context()  # the daemon's own: one ZAP handler per context, the hub has its own
    auth = ThreadAuthenticator(ctx)
    auth.start()
    readers = keys / "readers"
    readers.mkdir()
    (readers / "hub.key").write_bytes((keys / "hub.key").read_bytes())
    auth.configure_curve(domain="daemon", location=str(readers))
    upstream = f"tcp://127.0.0.1:{free_port()}"
    pub = _stand_in_daemon(ctx, keys, upstream)
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    try:
        with ExitStack() as stack:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(hubloop, "HANDSHAKE_S", 1.0)  # a held handshake retries sooner
                loop = stack.enter_context(running_hub(
                    "--daemon", upstream, "--daemon-key", str(keys / "vggvoxd.key"),
                    "--hub-key", str(keys / "hub.key_secret"), "--subscribers",
                    str(keys / "subs"), "--listen", events, "--listen-control", control,
                    "--max-subscribers", "2", "--max-message-bytes", "4096"))
            yield Rig(keys, pub, loop, events, control)
    finally:
        pub.close(0)
        auth.stop()
        ctx.term()


def _turn(source: str = "mic", node: str = "hall") -> TurnEvent:
    return TurnEvent(source=source, t_start=0.0, t_end=1.0, turn=1, speaker="alice",
                     node=node)


def _until_heard(rig: Rig, sub: zmq.Socket, conn: Connection, seconds: float = 10) -> object:
    """Publish until the subscriber hears one (the slow joiner: ZeroMQ connects lazily)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rig.send(_turn())
        got = conn.receive_event(sub, 0.1)
        if got is not None:
            return got
    return None


def test_events_pass_with_node_and_source_and_status_lists_the_daemon(rig: Rig) -> None:
    conn = rig.conn()
    sub = conn.subscribe(["turn"])
    try:
        got = _until_heard(rig, sub, conn)
        assert got is not None, "no event came through the hub"
        assert got.event.source == "hall/mic" and got.event.node == "hall"  # type: ignore
        rig.send(StatusEvent(source="mic", t_start=0, t_end=0, state="running", node="hall"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = conn.request("status")
            if reply["daemons"][0]["last_heartbeat"]:
                break
            time.sleep(0.05)
        (daemon,) = reply["daemons"]
        assert reply["hub"] and daemon["node"] == "hall" and daemon["connected"]
        assert daemon["heartbeat_age_s"] < 5 and daemon["sources"]["mic"]["state"] == "running"
        assert reply["sources"]["hall/mic"]["state"] == "running"
    finally:
        sub.close(0)


def test_a_daemons_op_is_refused_with_a_code_and_garbage_is_bad_request(rig: Rig) -> None:
    conn = rig.conn()
    with pytest.raises(ClientError, match="this is a hub") as e:
        conn.send(EnrollRequest(name="x", audio=[b"\0\0"]))
    assert e.value.code == "not_on_hub"
    assert conn.request("list")["speakers"] == []
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.REQ)
    sock.curve_serverkey = zmq.auth.load_certificate(rig.keys / "hub.key")[0]
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(
        rig.keys / "sub.key_secret")
    sock.connect(rig.control)
    try:
        sock.send(b"\xc1 not msgpack")
        assert sock.poll(5000)
        assert msgpack.unpackb(sock.recv())["code"] == "bad_request"
    finally:
        sock.close(0)


def test_an_unknown_key_hears_nothing_and_gets_no_reply(rig: Rig) -> None:
    conn = rig.conn("stranger", timeout=1)
    sub = conn.subscribe(["turn"])
    try:
        assert _until_heard(rig, sub, conn, seconds=1.5) is None
        with pytest.raises(ClientError, match="no answer"):
            conn.request("status")
    finally:
        sub.close(0)


def test_subscribers_beyond_the_cap_wait_for_a_place(rig: Rig) -> None:
    """--max-subscribers 2, three known keys arriving together: two get in, the third's
    handshake is held (again at each retry) until one leaves."""
    conns = [rig.conn(), rig.conn("sub2"), rig.conn()]
    socks = [c.subscribe(["turn"]) for c in conns]
    try:
        heard: set[int] = set()
        deadline = time.monotonic() + 3.0  # three handshake limits of the rig's 1 s
        while time.monotonic() < deadline:
            rig.send(_turn())
            for i, (c, s) in enumerate(zip(conns, socks, strict=True)):
                while c.receive_event(s, 0.01) is not None:
                    heard.add(i)
        assert len(heard) == 2 and rig.loop.counts.held >= 2, rig.loop.counts
        (waiting,) = set(range(3)) - heard
        socks[min(heard)].close(0)  # a place frees up: ZeroMQ's retry gets in
        assert _until_heard(rig, socks[waiting], conns[waiting], seconds=10) is not None
    finally:
        for s in socks:
            s.close(0)


def test_an_oversize_message_is_never_forwarded(rig: Rig) -> None:
    conn = rig.conn()
    sub = conn.subscribe(["turn"])
    try:
        assert _until_heard(rig, sub, conn) is not None
        big = _turn(source="x" * 8000)
        rig.send(big)
        deadline, seen = time.monotonic() + 10, list[str]()
        while time.monotonic() < deadline and not any(s == "hall/mic" for s in seen[1:]):
            rig.send(_turn())
            got = conn.receive_event(sub, 0.1)
            if got is not None:
                seen.append(got.event.source)
        assert "hall/mic" in seen and not any(s.startswith("hall/xxx") for s in seen)
    finally:
        sub.close(0)


def test_a_slow_subscriber_does_not_hold_up_the_others(rig: Rig) -> None:
    """One subscriber never reads; the other gets a burst far beyond the HWM."""
    slow_conn, fast_conn = rig.conn(), rig.conn("sub2")
    slow, fast = slow_conn.subscribe(["turn"]), fast_conn.subscribe(["turn"])
    slow.setsockopt(zmq.RCVHWM, 10)
    try:
        assert _until_heard(rig, slow, slow_conn) is not None
        assert _until_heard(rig, fast, fast_conn) is not None
        got = 0
        for i in range(5000):
            rig.send(_turn(), seq=i)
            while fast_conn.receive_event(fast, 0) is not None:
                got += 1
        deadline = time.monotonic() + 5
        while got < 4000 and time.monotonic() < deadline:
            got += fast_conn.receive_event(fast, 0.1) is not None
        assert got >= 4000
    finally:
        slow.close(0)
        fast.close(0)


def test_bad_options_are_one_line_each(tmp_path: Path) -> None:
    parser = build_parser()
    base = ["hub", "--daemon", "tcp://127.0.0.1:1", "--listen", "tcp://127.0.0.1:2"]
    cases = [
        (["--listen", "tcp://0.0.0.0:3"], "beyond loopback the hub needs --hub-key"),
        (["--daemon-key", str(tmp_path / "a.key")], "--daemon-key needs --hub-key"),
        (["--max-subscribers", "0"], "--max-subscribers must be 1..10000"),
        (["--hub-key", str(tmp_path / "no.key_secret"), "--subscribers", str(tmp_path)],
         "--hub-key .*cannot read a CURVE key"),
    ]
    for extra, message in cases:
        with pytest.raises(VggvoxError, match=message):
            hub.build(parser.parse_args(base + extra))
