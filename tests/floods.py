"""Connection floods against the real daemon: helpers for tests/test_faults.py."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import msgpack
import zmq
from daemon_proc import DaemonProcess

from vggvox_client.connection import ClientError


def limited(tmp: Path, files: int, args: list[str] | None = None) -> DaemonProcess:
    """A daemon whose soft and hard open-files limits are both ``files``."""
    d = DaemonProcess(tmp, args=args)
    d.argv = ["bash", "-c", f'ulimit -n {files} && exec "$0" "$@"', *d.argv]
    return d


def connection_cap(d: DaemonProcess) -> int:
    m = re.search(r"connections: at most (\d+) in all", d.output())
    assert m, d.output()
    return int(m.group(1))


def open_fds(d: DaemonProcess) -> int:
    assert d.proc is not None
    return len(list(Path(f"/proc/{d.proc.pid}/fd").iterdir()))


def connect_raw(path: str) -> socket.socket | None:
    """One raw connection to an ipc socket (it never says a word), or None if refused."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(path)
        return s
    except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
        s.close()
        return None


def flood(path: str, held: list[socket.socket], most: int, seconds: float) -> int:
    """Open connections as fast as the socket takes them, up to ``most`` held, for at
    most ``seconds``; returns how many attempts were refused."""
    refused, deadline = 0, time.monotonic() + seconds
    while len(held) < most and time.monotonic() < deadline:
        s = connect_raw(path)
        if s is None:
            refused += 1
            time.sleep(0.001)
        else:
            held.append(s)
    return refused


def status_within(d: DaemonProcess, seconds: float) -> float:
    """Seconds until a fresh client gets `status` answered; fails after ``seconds``."""
    t0 = time.monotonic()
    while True:
        try:
            assert d.conn.request("status", timeout=1)["ok"]
            return time.monotonic() - t0
        except ClientError:
            if time.monotonic() - t0 > seconds:
                raise
            time.sleep(0.1)


def dealer(endpoint: str) -> zmq.Socket:
    """A client that stays connected: ZeroMQ reconnects it by itself."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def ask_status(sock: zmq.Socket, timeout: float) -> dict | None:
    sock.send_multipart([b"", msgpack.packb({"op": "status"})])
    if not sock.poll(int(timeout * 1000)):
        return None
    return msgpack.unpackb(sock.recv_multipart()[-1])
