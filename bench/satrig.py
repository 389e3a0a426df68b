"""The satellites socket's rig for the benches (abuse_satellites.py): a real vggvoxd
(CURVE keys, ``satellites.listen`` on loopback TCP, ``satellites.max`` 3, under
``prlimit --nofile=1024:1024``) with two honest sources that keep talking while it is
attacked: ``stdin:live`` and a satellite ``kitchen``, both fed a two-speaker
conversation at real-time pace (``rig``); ``Sat``, a satellite's link by hand; and
``Rig.health``, how the honest sources and the daemon fared."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
import zmq
from abuse_common import Row, proc_status
from benchkit import FIXTURES, DaemonProcess, free_port

from vggvox.audio import load_audio
from vggvox.protocol.keys import keygen
from vggvox.protocol.pcm import to_pcm
from vggvox.protocol.satellite import DOWNSTREAM, Bye, Hello, Message, Pcm, decode
from vggvox_client.connection import Connection, curve_options

CONVO = FIXTURES / "stream_2spk.wav"
MAX = 3
KEYS = ("kitchen", "s1", "s2", "s3", "s4", "s5", "s6")
CHUNK = 1600
"""The honest satellite's frames: 0.1 s."""


class Sat:
    """A satellite's link by hand: a CURVE DEALER whose routing id is its session."""

    def __init__(self, rig: Rig, key: str, session: str | None = None) -> None:
        self.session = session or f"{random.getrandbits(96):024x}"
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        opts = {zmq.LINGER: 0, zmq.ROUTING_ID: self.session.encode(), zmq.SNDHWM: 1000,
                **curve_options(rig.keys / "vggvoxd.key", rig.keys / f"{key}.key_secret")}
        for opt, value in opts.items():
            self.sock.setsockopt(opt, value)
        self.sock.connect(rig.listen)

    def send(self, msg: Message | bytes, timeout: float = 5.0) -> bool:
        if self.sock.poll(round(timeout * 1000), zmq.POLLOUT):
            self.sock.send(msg if isinstance(msg, bytes) else msg.encode())
            return True
        return False

    def recv(self, timeout: float) -> Any:
        """The next message from the daemon (not an ack), or None."""
        deadline = time.monotonic() + timeout
        while self.sock.poll(max(0, round(1000 * (deadline - time.monotonic())))):
            msg = decode(self.sock.recv(), DOWNSTREAM)
            if msg.kind != "ack":
                return msg
        return None

    def join(self, name: str, end: int = 0, timeout: float = 5.0) -> Any:
        """Hello, and the daemon's answer (welcome, refused) or None."""
        self.send(Hello(1, name, self.session, 0, end), timeout)
        return self.recv(timeout)

    def close(self) -> None:
        self.sock.close(0)


@dataclass
class Rig:
    d: DaemonProcess
    keys: Path
    listen: str
    audio: np.ndarray
    stop: threading.Event = field(default_factory=threading.Event)
    heard: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    runners: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.d.proc is not None
        return self.d.proc.pid

    def status(self, timeout: float = 5.0) -> tuple[dict[str, Any] | None, float]:
        t0 = time.perf_counter()
        try:
            return self.d.conn.request("status", timeout=timeout), time.perf_counter() - t0
        except Exception:
            return None, time.perf_counter() - t0

    def rss(self) -> float:
        return proc_status(self.pid, "VmRSS")

    def spawn(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.runners.append(t)

    def mark(self) -> tuple[float, Counter[str], float]:
        self.latency.clear()
        return time.monotonic(), Counter(self.heard), self.rss()

    def health(self, mark: tuple[float, Counter[str], float]) -> str:
        """How the honest sources and the daemon fared since ``mark``."""
        t0, heard0, rss0 = mark
        secs = time.monotonic() - t0
        rates = []
        for src in ("kitchen", "stdin"):
            lat = sorted(self.latency[src])
            p95 = f", p95 {1000 * lat[int(0.95 * (len(lat) - 1))]:.0f} ms" if lat else ""
            rates.append(f"{src} {(self.heard[src] - heard0[src]) / secs:.1f}/s{p95}")
        reply, took = self.status()
        alive = self.d.proc is not None and self.d.proc.poll() is None
        return (f"meanwhile windows decided: {'; '.join(rates)}; status "
                f"{'answered in %.0f ms' % (1000 * took) if reply else 'NO ANSWER'}; RSS "
                f"{rss0:.0f} -> {self.rss():.0f} MB; daemon {'alive' if alive else 'DEAD'}")

    def log_count(self, text: str) -> int:
        return self.d.log.read_text(errors="replace").count(text)


def listener(rig: Rig) -> None:
    sub = rig.d.conn.subscribe(["speaker"])
    try:
        while not rig.stop.is_set():
            ev = Connection.receive(sub, 0.2)
            if ev is not None:
                rig.heard[ev["source"]] += 1
                rig.latency[ev["source"]].append(ev["time"] - ev["captured"])
    finally:
        sub.close(0)


def honest_stdin(rig: Rig) -> None:
    """The daemon's own source: speech on stdin at real-time pace."""
    assert rig.d.proc is not None and rig.d.proc.stdin is not None
    pcm, t0, i = to_pcm(rig.audio), time.monotonic(), 0
    while not rig.stop.is_set():
        chunk = pcm[(i * 2 * CHUNK) % len(pcm):][: 2 * CHUNK]
        try:
            rig.d.proc.stdin.write(chunk)
            rig.d.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return
        i += 1
        time.sleep(max(0.0, t0 + i * CHUNK / 16000 - time.monotonic()))


def honest_satellite(rig: Rig) -> None:
    """``kitchen``: speech at real-time pace; it says hello again when refused (after a
    shed, say), as the real one does."""
    sat, pcm, pos = Sat(rig, "kitchen"), to_pcm(rig.audio), 0
    t0 = time.monotonic()
    try:
        sat.join("kitchen")
        while not rig.stop.is_set():
            off = (pos * 2) % len(pcm)
            sat.send(Pcm(pos, pcm[off:off + 2 * CHUNK], 0), 1.0)
            pos += len(pcm[off:off + 2 * CHUNK]) // 2
            while sat.sock.poll(0):
                msg = decode(sat.sock.recv(), DOWNSTREAM)
                if msg.kind == "refused":
                    sat.send(Hello(1, "kitchen", sat.session, 0, pos))
            time.sleep(max(0.0, t0 + pos / 16000 - time.monotonic()))
        sat.send(Bye(), 1.0)
    finally:
        sat.close()


def make_keys(tmp: Path) -> Path:
    """The daemon's pair, an admin, a stranger and the satellites' (all linked at the top)."""
    keys = tmp / "keys"
    keygen(keys, "vggvoxd")
    keygen(keys / "admins", "alice")
    keygen(keys / "strangers", "mallory")
    for name in KEYS:
        keygen(keys / "satellites", name)
    for folder in ("admins", "strangers", "satellites"):
        for f in (keys / folder).iterdir():
            (keys / f.name).symlink_to(f)
    return keys


def start_daemon(tmp: Path, keys: Path) -> tuple[DaemonProcess, str]:
    """The daemon and its satellites endpoint; three tries, as a port picked free may be
    taken before the daemon binds it (other work on the machine)."""
    for attempt in range(3):
        picked: set[int] = set()
        while len(picked) < 3:
            picked.add(free_port())
        listen, events, control = (f"tcp://127.0.0.1:{p}" for p in picked)
        (tmp / "vggvoxd.yaml").write_text(yaml.safe_dump({
            "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                         "admins": str(keys / "admins"),
                         "satellites": str(keys / "satellites")},
            "satellites": {"listen": listen, "max": MAX, "timeout_s": 1.0, "forget_s": 3.0},
            "status": {"interval_s": 0.5}}))
        d = DaemonProcess(tmp, source="stdin:live", args=[
            "--config", str(tmp / "vggvoxd.yaml"), "--events", events, "--control", control])
        d.argv = ["prlimit", "--nofile=1024:1024", *d.argv]
        d.conn = Connection(control, events, 10, keys / "vggvoxd.key", keys / "alice.key_secret")
        try:
            d.start(timeout=60)
            return d, listen
        except RuntimeError as e:
            if attempt == 2 or "Address already in use" not in str(e):
                raise
    raise AssertionError("unreachable")


@contextmanager
def rig(tmp: Path) -> Iterator[Rig]:
    tmp.mkdir(parents=True, exist_ok=True)
    d, listen = start_daemon(tmp, make_keys(tmp))
    r = Rig(d, tmp / "keys", listen, load_audio(CONVO))
    try:
        for target in (listener, honest_stdin, honest_satellite):
            r.spawn(target, r)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and min(r.heard["kitchen"], r.heard["stdin"]) < 3:
            time.sleep(0.2)
        yield r
    finally:
        r.stop.set()
        for t in r.runners:
            t.join(timeout=5)
        d.stop()


def after(seconds: float | None) -> str:
    return "NOT within 10 s" if seconds is None else f"after {seconds:.1f} s"


def new_surface(item: str, attack: str, now: str) -> Row:
    return (item, attack, "(new surface)", now)


def sat_status(r: Rig, name: str) -> dict[str, Any]:
    st, _ = r.status()
    return (st or {}).get("sources", {}).get(name, {})
