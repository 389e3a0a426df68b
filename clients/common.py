"""What the client modes share: skipped-input records and output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from vggvox.errors import ListFormatError


@dataclass(frozen=True)
class Skipped:
    """An input left out of a run, and why. ``what`` is a path, a speaker or a list."""

    what: str
    reason: str
    line: int | None = None

    @classmethod
    def from_list_error(cls, e: ListFormatError) -> Skipped:
        return cls(e.path, f"malformed line ({e.reason}): {e.text!r}", e.line_no)

    def __str__(self) -> str:
        where = f"{self.what}:{self.line}" if self.line else self.what
        return f"skipped {where}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.what, "reason": self.reason}
        if self.line:
            d["line"] = self.line
        return d


def report_skipped(skipped: list[Skipped]) -> None:
    for s in skipped:
        print(s, file=sys.stderr)


def print_json(data: dict[str, Any]) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
