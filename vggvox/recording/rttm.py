"""RTTM speaker timelines: the standard format of who spoke when (truth and output).

One ``SPEAKER file chan tbeg tdur <NA> <NA> name <NA> <NA>`` line per speech
segment. Other RTTM record types (``SPKR-INFO``, ``LEXEME`` ...) carry no
speaker time and are skipped, so that NIST-era files read too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vggvox.errors import ListFormatError, VggvoxError

# Record types of the RTTM specification other than SPEAKER: legal, but not speaker time.
_OTHER_TYPES = frozenset(
    {"SEGMENT", "NOSCORE", "NO_RT_METADATA", "LEXEME", "NON-LEX", "NON-SPEECH", "FILLER",
     "EDIT", "IP", "SU", "CB", "A/P", "SPKR-INFO"}
)


@dataclass(frozen=True)
class Segment:
    """Speech of one speaker from ``start`` to ``end`` seconds."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def _parse(path: str, no: int, line: str, file_id: str | None) -> Segment | None:
    fields = line.split()
    if fields[0] in _OTHER_TYPES:
        return None
    if fields[0] != "SPEAKER":
        raise ListFormatError(path, no, line, f"unknown RTTM record type {fields[0]!r}")
    # 10 fields is the standard; some tools drop the trailing <NA> (signal lookahead time).
    if len(fields) not in (9, 10):
        raise ListFormatError(path, no, line, f"expected 10 fields, found {len(fields)}")
    if file_id is not None and fields[1] != file_id:
        return None
    try:
        tbeg, tdur = float(fields[3]), float(fields[4])
    except ValueError:
        raise ListFormatError(path, no, line, "tbeg and tdur must be numbers") from None
    if not (math.isfinite(tbeg) and math.isfinite(tdur)) or tbeg < 0 or tdur < 0:
        raise ListFormatError(path, no, line, "tbeg and tdur must be finite and >= 0")
    if fields[7] == "<NA>":
        raise ListFormatError(path, no, line, "the speaker name is <NA>")
    # Rounding undoes the float noise of the sum (23.874 + 5.79 = 29.663999999999998).
    return Segment(tbeg, round(tbeg + tdur, 9), fields[7])


def read_rttm(path: str | Path, file_id: str | None = None) -> list[Segment]:
    """The SPEAKER segments of an RTTM file (of one file id if given), sorted by start.

    Unlike the utterance lists, a malformed line stops the reading
    (ListFormatError): a truth with a hole in it would give wrong scores quietly.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VggvoxError(f"{name}: cannot read the RTTM file: {e}") from None
    segments: list[Segment] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(";;"):
            continue
        seg = _parse(name, no, line, file_id)
        if seg is not None:
            segments.append(seg)
    return sorted(segments, key=lambda s: (s.start, s.end, s.speaker))


def format_rttm(segments: Iterable[Segment], file_id: str) -> str:
    """RTTM text for ``segments`` (sorted by start), times rounded to the millisecond."""
    if not file_id or any(c.isspace() for c in file_id):
        raise VggvoxError(f"RTTM file id {file_id!r} must be non-empty without spaces")
    lines = []
    for s in sorted(segments, key=lambda s: (s.start, s.end, s.speaker)):
        if not s.speaker or any(c.isspace() for c in s.speaker):
            raise VggvoxError(f"RTTM speaker name {s.speaker!r} must be non-empty without spaces")
        lines.append(
            f"SPEAKER {file_id} 1 {s.start:.3f} {s.duration:.3f} <NA> <NA> {s.speaker} <NA> <NA>\n"
        )
    return "".join(lines)


def write_rttm(path: str | Path, segments: Iterable[Segment], file_id: str) -> None:
    """Write ``segments`` as an RTTM file for recording ``file_id``."""
    Path(path).write_text(format_rttm(segments, file_id), encoding="utf-8")
