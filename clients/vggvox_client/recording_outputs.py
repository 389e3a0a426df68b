"""Where each recording's answer goes: a summary on stdout, RTTM and JSON files.

``identify`` and ``replay --rttm`` write through the same class, so both give the
same files for the same answer. A PATH is a file (every recording in it), a
folder (an existing one, or a path ending in ``/``: one FILE_ID.rttm or .json
per recording) or ``-`` (stdout).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from vggvox.errors import VggvoxError
from vggvox.recording.identify import live_segments
from vggvox.recording.outputs import as_json, rttm_text, summary_lines, timeline_lines
from vggvox.recording.segments import RecordingResult, file_id_of


def from_events(path: Path, events: list[dict[str, Any]], duration_s: float) -> RecordingResult:
    """A daemon's answer for one replayed file, from its events: its final turns."""
    return RecordingResult(str(path), file_id_of(path), duration_s,
                           tuple(live_segments(events)))


class RecordingOutputs:
    """Where each recording's answer goes, as it comes (a long batch shows progress)."""

    def __init__(self, rttm: str | None, json_to: str | None = None,
                 timeline: bool = False, summary: bool = True) -> None:
        self.rttm, self.json, self.timeline = rttm, json_to, timeline
        # RTTM or JSON on stdout is the whole of stdout (a pipe reads it as such).
        self.summary = summary and "-" not in (rttm, json_to)
        self.rttm_parts: list[str] = []
        self.json_parts: list[dict[str, Any]] = []
        self.ids: set[str] = set()

    def add(self, result: RecordingResult) -> None:
        file_id, n = result.file_id, 1
        while file_id in self.ids:  # two recordings of one name in different folders
            n += 1
            file_id = f"{result.file_id}-{n}"
        self.ids.add(file_id)
        result = replace(result, file_id=file_id)
        if self.summary:
            print("\n".join(summary_lines(result)
                            + (timeline_lines(result.segments) if self.timeline else [])))
        if self.rttm is not None:
            self._put(self.rttm, file_id, ".rttm", rttm_text(result), self.rttm_parts)
        if self.json is not None:
            doc = as_json(result)
            # One shape wherever it goes: a folder's file holds its one recording.
            self._put(self.json, file_id, ".json",
                      json.dumps({"recordings": [doc]}, indent=2) + "\n", None)
            self.json_parts.append(doc)

    def _put(self, where: str, file_id: str, suffix: str, text: str,
             parts: list[str] | None) -> None:
        if is_folder(where):
            path = Path(where)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise VggvoxError(f"{path}: cannot make the folder: {e.strerror or e}") from None
            _write(path / f"{file_id}{suffix}", text)
        elif parts is not None:
            parts.append(text)

    def close(self) -> None:
        rttm = self.rttm
        if rttm is not None and not is_folder(rttm):
            _write(rttm, "".join(self.rttm_parts))
        js = self.json
        if js is not None and not is_folder(js):
            _write(js, json.dumps({"recordings": self.json_parts}, indent=2) + "\n")


def is_folder(where: str) -> bool:
    return where != "-" and (where.endswith(os.sep) or Path(where).is_dir())


def _write(path: Path | str, text: str) -> None:
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise VggvoxError(f"{path}: cannot write: {e.strerror or e}") from None
