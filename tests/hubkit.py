"""A hub in this process, in front of real daemons: the set-up the hub's bridge tests share.

``running_hub`` builds ``vggvox-client hub`` from its command line and forwards in a
thread until the ``with`` ends; ``fleet_daemon`` is a real vggvoxd with a ``node``
and heartbeats every 0.5 s (the hub's table and the bridges' "online" wait on them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from daemon_proc import DaemonProcess

from vggvox_client import hub
from vggvox_client.cli import build_parser
from vggvox_client.hubloop import HubLoop


@contextmanager
def running_hub(*argv: str) -> Iterator[HubLoop]:
    """``vggvox-client hub ARGV...`` forwarding in a thread; stopped (within 5 s) after."""
    loop, auth = hub.build(build_parser().parse_args(["hub", *argv]))
    thread = threading.Thread(target=loop.run, name="test-hub", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.stop.set()
        thread.join(5)
        if auth is not None:
            auth.stop()


def fleet_daemon(tmp: Path, node: str) -> DaemonProcess:
    """A real daemon (source stdin) named ``node``, heartbeats every 0.5 s, started."""
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"node": node, "status": {"interval_s": 0.5}}))
    return DaemonProcess(tmp, args=["--config", str(cfg)]).start()


def until(what: str, check: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true, polling every 50 ms; an AssertionError naming
    ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)
