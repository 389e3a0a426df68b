"""What the client modes share: skipped-input records and output helpers."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vggvox.errors import ListFormatError


@dataclass(frozen=True)
class Skipped:
    """An input left out of a run, and why. ``what`` is a path, a speaker or a list."""

    what: str
    reason: str
    line: int | None = None
    """The line of the list (``source``, else ``what`` itself) it came from."""
    source: str | None = None
    """The list that named ``what``, when it came from one."""

    @classmethod
    def from_list_error(cls, e: ListFormatError) -> Skipped:
        return cls(e.path, f"malformed line ({e.reason}): {e.text!r}", e.line_no)

    def __str__(self) -> str:
        # Where to look first: the list and its line, then the file it named.
        if self.source:
            where = f"{self.source}:{self.line}: {self.what}" if self.line else \
                f"{self.source}: {self.what}"
        else:
            where = f"{self.what}:{self.line}" if self.line else self.what
        return f"skipped {where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.what, "reason": self.reason}
        if self.line:
            d["line"] = self.line
        if self.source:
            d["list"] = self.source
        return d


def report_skipped(skipped: list[Skipped]) -> None:
    """One line each on stderr, in the order of the lists' lines (malformed lines and
    unusable files are found in different passes), lists in the order first met."""
    lists: dict[str, int] = {}

    def where(s: Skipped) -> tuple[int, int]:
        named_in = s.source or (s.what if s.line is not None else "")
        return lists.setdefault(named_in, len(lists)), s.line or 0

    for s in sorted(skipped, key=where):
        print(s, file=sys.stderr)


def plural(n: int, word: str, width: int = 0) -> str:
    """``1 speaker``, ``2 speakers``; ``width`` right-aligns the number."""
    return f"{n:{width}d} {word}{'' if n == 1 else 's'}"


def print_json(data: dict[str, Any]) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def add_rule_args(p: argparse.ArgumentParser, default: str, det: str) -> None:
    """--false-accept, --threshold and --det: the open-set rule and its curve."""
    p.add_argument("--false-accept", type=float, metavar="RATE",
                   help=f"share of strangers the model's calibration may accept ({default})")
    p.add_argument("--threshold", type=float, metavar="RAW",
                   help="name the best speaker at this raw score or above instead "
                        "(overrides --false-accept)")
    p.add_argument("--det", type=output_file, metavar="PNG",
                   help=f"draw to this PNG the curve of one raw threshold over {det}: "
                        "strangers accepted against enrolled speakers not named right, with "
                        "the operating point")


def output_file(text: str) -> Path:
    """An argparse type for a file to write: its folder must exist, checked before any
    work starts (not after an hour of embedding)."""
    path = Path(text)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: folder {folder} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder, give a file name")
    return path


ENDPOINT = re.compile(r"(ipc://.+|tcp://(\[[0-9a-fA-F:.]+\]|[\w.-]+|\*):(\d{1,5}|\*))")


def endpoint(text: str) -> str:
    """An argparse type for a ZeroMQ endpoint of the daemon: ipc://PATH or tcp://HOST:PORT."""
    if not ENDPOINT.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: not an endpoint; give ipc:///path/to/control.sock or "
            "tcp://127.0.0.1:5561")
    return text


def flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        reader_gone()


def reader_gone() -> None:
    """stdout's reader went away (``| head -1``): not an error, it had what it wanted.
    stdout is pointed at /dev/null so that the interpreter's last flush of what is
    still buffered goes nowhere instead of printing "Exception ignored ..."."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by something without a descriptor
        pass


def stdout_is_pipe() -> bool:
    """Whether stdout is a pipe or a socket, the only outputs whose reader can go."""
    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
