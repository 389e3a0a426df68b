"""The systemd notify protocol (sd_notify): datagrams to $NOTIFY_SOCKET.

Without NOTIFY_SOCKET (not under systemd) every call is a no-op.

``Watchdog`` sends systemd's watchdog pings, each only while every stage is
healthy. Each stream thread calls it per captured block (a capture that stops
stops the pings) and the run loop while no source should be heard from; a call
costs one clock read unless a ping is due, so the stages' health is read at
most twice per watchdog period, not per block. Any thread may call it: two that
find a ping due at once send two, which systemd takes as one.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            # A leading '@' names a socket in the abstract namespace.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() else None
        self._last_ping = 0.0
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(self.address)
                s.sendall(message.encode())
            return True
        except OSError as e:
            log.warning("sd_notify %r failed: %s", message, e)
            return False

    def ready(self, status: str = "") -> None:
        if not self.ready_sent:
            self.ready_sent = self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def ping_due(self) -> bool:
        """A watchdog ping is due: at most twice per watchdog period (systemd's advice),
        never without systemd."""
        return (self.address is not None
                and time.monotonic() - self._last_ping >= (self.watchdog_interval or 1.0))

    def watchdog(self) -> None:
        """Ping, if one is due."""
        if self.ping_due():
            self._last_ping = time.monotonic()
            self.send("WATCHDOG=1")


class Watchdog:
    """Pings systemd's watchdog when one is due and ``healthy()`` says every stage is."""

    def __init__(self, notifier: Notifier, healthy: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.healthy = healthy

    def __call__(self) -> None:
        if self.notifier.ping_due() and self.healthy():
            self.notifier.watchdog()
