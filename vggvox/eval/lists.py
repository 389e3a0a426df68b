"""The list formats of the VGGVox and VoxCeleb traditions.

- Utterance lists (``enroll_list.csv``, ``test_list.csv``): one
  ``filename speaker`` a line, space-separated; or VGGVoxRealTime's CSV form
  with a ``filename,speaker`` header line. An optional third column names the
  room (``filename speaker room``; ``filename,speaker,room``): where it was
  recorded, for figures per room (``--rooms``).
- Trial lists (VoxCeleb): ``label enroll test`` a line, label 1 or 0.

Paths are relative to the list's folder unless a root is given. A malformed
line does not stop the reading: it comes back as a ListFormatError beside the
good entries, so the caller can report it and go on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vggvox.errors import ListFormatError, VggvoxError


@dataclass(frozen=True)
class Utterance:
    path: Path
    speaker: str
    line: int
    room: str | None = None
    """The optional third column; None where the list has two."""


@dataclass(frozen=True)
class Trial:
    label: int
    enroll: Path
    test: Path
    line: int


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VggvoxError(f"{path}: cannot read the list: {e}") from None
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def _base(path: Path, root: Path | None) -> Path:
    return root if root is not None else path.parent


def read_utterances(
    path: str | Path, root: str | Path | None = None
) -> tuple[list[Utterance], list[ListFormatError]]:
    path = Path(path)
    base = _base(path, Path(root) if root else None)
    lines = _lines(path)
    header = lines[0][1].replace(" ", "").lower() if lines else ""
    csv = header in ("filename,speaker", "filename,speaker,room")
    if csv:
        lines = lines[1:]
    good: list[Utterance] = []
    bad: list[ListFormatError] = []
    for no, text in lines:
        fields = [f.strip() for f in text.split(",")] if csv else text.split()
        if len(fields) not in (2, 3) or not all(fields):
            want = ("'filename,speaker'" if csv else "'filename speaker'") + " (and a room)"
            bad.append(ListFormatError(str(path), no, text, f"expected {want}"))
            continue
        good.append(Utterance(base / fields[0], fields[1], no,
                              fields[2] if len(fields) == 3 else None))
    return good, bad


def read_trials(
    path: str | Path, root: str | Path | None = None
) -> tuple[list[Trial], list[ListFormatError]]:
    path = Path(path)
    base = _base(path, Path(root) if root else None)
    good: list[Trial] = []
    bad: list[ListFormatError] = []
    for no, text in _lines(path):
        fields = text.split()
        if len(fields) != 3:
            bad.append(ListFormatError(str(path), no, text, "expected 'label enroll test'"))
        elif fields[0] not in ("0", "1"):
            bad.append(ListFormatError(str(path), no, text, "label must be 0 or 1"))
        else:
            good.append(Trial(int(fields[0]), base / fields[1], base / fields[2], no))
    return good, bad
