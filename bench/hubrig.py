"""The hub's test rig for the benches (abuse_hub.py, bench_hub.py): a real
``vggvox-client hub`` in a subprocess on loopback TCP, CURVE on both sides, fed by a
stand-in daemon (a CURVE PUB socket sending real encoded events)."""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from pgserver import free_port
from zmq.auth.thread import ThreadAuthenticator

from vggvox.protocol.events import TurnEvent, encode
from vggvox.protocol.keys import keygen
from vggvox_client.connection import Connection

FILES = 1024
"""The hub's limit of open files in these measurements (a usual soft limit)."""


@dataclass
class Hub:
    keys: Path
    proc: subprocess.Popen[bytes]
    events: str
    control: str
    feed: zmq.Socket[bytes]

    def conn(self, who: str = "sub", timeout: float = 5) -> Connection:
        return Connection(self.control, self.events, timeout, self.keys / "hub.key",
                          self.keys / f"{who}.key_secret")

    def files(self) -> int:
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))


def make_keys(tmp: Path) -> Path:
    keys = tmp / "keys"
    for folder, name in ((keys, "vggvoxd"), (keys / "readers", "hub"), (keys / "subs", "sub"),
                         (keys / "subs", "sub2"), (keys / "subs", "sub3"), (keys, "stranger")):
        keygen(folder, name)
        if folder != keys:
            for suffix in (".key", ".key_secret"):
                (keys / f"{name}{suffix}").symlink_to(folder / f"{name}{suffix}")
    return keys


@contextmanager
def running_hub(tmp: Path, extra: list[str] = (), daemons: list[str] = ()) -> Any:  # type: ignore[assignment]
    """A hub subprocess fed by a stand-in daemon (its PUB socket: ``Hub.feed``)."""
    keys = make_keys(tmp) if not (tmp / "keys").exists() else tmp / "keys"
    ctx = zmq.Context()  # the stand-in daemon's own, with its own ZAP handler
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="daemon", location=str(keys / "readers"))
    feed = ctx.socket(zmq.PUB)
    public, secret = zmq.auth.load_certificate(keys / "vggvoxd.key_secret")
    feed.curve_server, feed.curve_publickey, feed.curve_secretkey = True, public, secret
    feed.zap_domain = b"daemon"
    upstream = f"tcp://127.0.0.1:{free_port()}"
    feed.bind(upstream)
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "vggvox_client.cli", "hub", "--daemon", upstream,
            *[a for d in daemons for a in ("--daemon", d)],
            "--daemon-key", str(keys / "vggvoxd.key"), "--hub-key", str(keys / "hub.key_secret"),
            "--subscribers", str(keys / "subs"), "--listen", events,
            "--listen-control", control, *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: resource.setrlimit(  # a common default
                                resource.RLIMIT_NOFILE, (FILES, FILES)))
    try:
        hub = Hub(keys, proc, events, control, feed)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                hub.conn(timeout=0.5).request("status")
                break
            except Exception:
                time.sleep(0.1)
        yield hub
    finally:
        proc.terminate()
        proc.wait(10)
        feed.close(0)
        auth.stop()
        ctx.term()


def turn_event(i: int = 0, source: str = "mic") -> TurnEvent:
    return TurnEvent(source=source, t_start=0.0, t_end=1.0, turn=i, node="bench",
                     time=time.time())


class Feeder:
    """Sends a turn event every ``period`` s from the stand-in daemon, in a thread."""

    def __init__(self, hub: Hub, period: float = 0.01) -> None:
        self.hub, self.period, self.sent = hub, period, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.period):
            self.sent += 1
            self.hub.feed.send_multipart(encode(turn_event(self.sent), self.sent))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def heard(conn: Connection, sock: zmq.Socket[bytes], seconds: float) -> int:
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        n += conn.receive_event(sock, 0.05) is not None
    return n


