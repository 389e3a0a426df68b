"""Log lines for people and for journald, from one ``configure`` call.

In a terminal or a file, each line starts with a timestamp. Under systemd
(``JOURNAL_STREAM`` set: stdout and stderr go to the journal, which adds its
own time) a line starts instead with its syslog priority, ``<3>`` for an
error, ``<4>`` for a warning, so that ``journalctl -p warning`` finds them.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                   logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """``<N>LEVEL name: message``: sd-daemon(3)'s priority prefix, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        # Each line of a multi-line message (a traceback) carries the prefix, since
        # journald reads the prefix line by line.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM"))


def configure(level: str, stream: TextIO) -> None:
    """Send this process's logs to ``stream`` at ``level`` (any case), in the form that
    suits where it goes; a ValueError names the levels for a wrong one."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    if any(not getattr(h, "vggvox", False) for h in root.handlers):
        return  # the host set logging up (an application, pytest): it stays theirs
    handler = logging.StreamHandler(stream)
    handler.vggvox = True  # type: ignore[attr-defined]  # ours: replaced on a second call
    if under_journald():
        handler.setFormatter(JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(name)
