"""systemd's watchdog is pinged while the daemon is healthy, whatever its sources do.

Found under a real systemd (issue 21, tests/test_service.py): the pings came only
with captured blocks, so a service whose sources are a file that has ended, or a
pipe that pauses (which the daemon allows, for as long as its writer likes), went
unpinged and was killed and restarted every WatchdogSec. Now the run loop pings
while no source that should be heard from is silent. A microphone that falls
silent still stops the pings (that is what the watchdog is for), and so does a
hung stage (tests/test_service.py, under systemd).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
from daemon_proc import DaemonProcess

from conftest import write_wav


class NotifySocket:
    """The datagram socket systemd listens on ($NOTIFY_SOCKET), here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)

    def drain(self, seconds: float) -> list[str]:
        """The messages that arrive within ``seconds``."""
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                pass
        return got


def test_pings_go_on_after_a_file_ends_and_while_a_pipe_pauses(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32)
    room = write_wav(tmp_path / "room.wav", noise)  # 1 s, quiet: no speech
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(f'sources:\n  - {{name: room, uri: "file:{room}"}}\n'
                   "  - {name: pipe, uri: stdin}\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    # WATCHDOG_USEC 0.4 s: a ping at most every 0.2 s.
    d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)],
                      env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    d.start()
    try:
        deadline = time.monotonic() + 20
        while d.conn.request("status")["sources"]["room"]["state"] != "finished":
            assert time.monotonic() < deadline, "the 1 s file did not finish within 20 s"
            time.sleep(0.1)
        notify.drain(0.3)  # what came before
        later = notify.drain(2.0)  # the file has ended, and the pipe says nothing
        assert later.count("WATCHDOG=1") >= 5, later
        assert d.conn.request("status")["sources"]["pipe"]["state"] == "running"
    finally:
        d.stop()
        notify.sock.close()


def test_every_thread_of_the_daemon_is_a_stage_of_its_health(tmp_path: Path) -> None:
    """Each thread the daemon runs is a stage: under its Guard, in ``guards()`` and part of
    ``healthy()`` (so a dead one stops the watchdog's pings); or one of the few that are
    not, by design (guard.py): the run loop, a source's own thread, a metrics connection,
    pyzmq's CURVE authenticator, which ``healthy()`` checks is alive. Run in-process with
    every optional stage on: a file source, the metrics endpoint and CURVE."""
    import threading
    import urllib.request

    import zmq.auth
    from daemon_proc import free_port
    from zmq.auth.thread import AuthenticationThread

    from vggvoxd.daemon import Daemon
    from vggvoxd.main import build_parser, settings_from

    keys = tmp_path / "keys"
    keys.mkdir()
    _, secret = zmq.auth.create_certificates(keys, "vggvoxd")
    Path(secret).chmod(0o600)
    noise = np.random.default_rng(0).normal(0, 0.01, 16000 * 30).astype(np.float32)
    room = write_wav(tmp_path / "room.wav", noise)  # 30 s, quiet: the source keeps running
    port = free_port()
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(f'sources:\n  - {{name: room, uri: "file:{room}"}}\n'
                   f"metrics: {{listen: '127.0.0.1:{port}'}}\n"
                   f"security: {{server_key: '{secret}', admins: '{keys}'}}\n")
    settings, _ = settings_from(build_parser().parse_args([
        "--config", str(cfg), "--store", str(tmp_path / "v.db"),
        "--control", f"ipc://{tmp_path}/c.sock", "--events", f"ipc://{tmp_path}/e.sock"]))
    before = set(threading.enumerate())
    d = Daemon(settings, source="mic")
    loop = threading.Thread(target=d.run, name="run-loop", daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while not (d.lives and d.lives[0].state == "running" and d.health.healthy()):
            assert time.monotonic() < deadline, "the daemon did not start within 20 s"
            time.sleep(0.05)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"vggvox_stage_restarts_total" in r.read()
        stages = d.health.stages()
        staged = {getattr(stage, "_thread", None) for stage in stages.values()}
        exempt = {loop, d.lives[0].stream.source._thread}  # type: ignore[attr-defined]
        for t in set(threading.enumerate()) - before:
            if t in staged or t in exempt or isinstance(t, AuthenticationThread) \
                    or t.name == "metrics-conn":
                continue
            raise AssertionError(f"thread {t.name!r} is neither a stage nor exempt")
        assert {"embedder", "search", "events", "control", "enroll-worker", "room",
                "metrics"} <= set(stages)
        assert {name: stage.guard for name, stage in stages.items()}.items() \
            <= d.health.guards().items()
        assert d.curve._auth is not None
        d.curve._auth.stop()  # the authenticator's thread gone: the daemon is not healthy
        assert not d.health.healthy()
    finally:
        d.stop("test")
        loop.join(10)
    assert not loop.is_alive()
