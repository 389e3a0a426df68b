"""Open-set figures per room (``offline``/``batch-offline --open-set --rooms``).

A calibration fitted on a mixture of recordings can hold on the mixture and not
in one room, where strangers share the enrolled speakers' microphone, acoustics
and often their words (issue 22). So each room is scored as a deployment of its
own: its enrolled speakers alone are the candidates, and only its test
utterances are decided, by the same rule as the whole run (the cutoff for this
many enrolled speakers). Beside the figures at the setting, each room gets what
the best single raw threshold for that room could do at the same false-accept
rate: the gap between the two is what the rule loses by not knowing the room.

An utterance's room is its list's third column (``filename speaker room``), or
else the first folder of its path as listed (``fsdd/...`` is in room ``fsdd``).
A speaker is enrolled in every room their enrollment utterances come from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vggvox.calibration import AcceptRule
from vggvox.errors import VggvoxError
from vggvox.eval.lists import Utterance, read_utterances
from vggvox_client.offline import Report, TestResult


@dataclass(frozen=True)
class RoomFigures:
    room: str
    n_speakers: int
    """Enrolled speakers of the room: the candidates of its decisions."""
    n_strangers: int
    strangers_named: int
    n_enrolled_tests: int
    enrolled_right: int
    best_threshold: float | None
    """The raw score that names the most enrolled speakers right while naming at most
    the target share of the room's strangers (None: no threshold does)."""
    best_threshold_right: int
    target_false_accept: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def from_lists(report: Report, enroll_list: Path, test_list: Path,
               root: Path | None) -> list[RoomFigures]:
    """The figures of ``report``'s run, its lists read again for the rooms (cheap;
    ``identify`` stays as it is)."""
    enroll, _ = read_utterances(enroll_list, root)
    tests, _ = read_utterances(test_list, root)
    return room_figures(report, enroll, tests, root or enroll_list.parent,
                        root or test_list.parent)


def room_of(u: Utterance, base: Path) -> str:
    """Its third column, or the first folder of its path below the list's base."""
    if u.room is not None:
        return u.room
    try:
        parts = u.path.relative_to(base).parts
    except ValueError:
        parts = u.path.parts
    return parts[0] if len(parts) > 1 else "."


def room_figures(report: Report, enroll: list[Utterance], tests: list[Utterance],
                 enroll_base: Path, test_base: Path) -> list[RoomFigures]:
    """Each room's figures, by room name; the report's rule decides. The bases are
    the folders each list's paths are relative to (--root, or the list's folder)."""
    rule = report.rule
    if rule is None:
        raise VggvoxError("--rooms needs --open-set")
    if report.depth is not None:
        raise VggvoxError("--rooms needs every score: fewer enrolled speakers than "
                          "--index-above")
    rooms_of: dict[str, set[str]] = defaultdict(set)
    for u in enroll:
        rooms_of[u.speaker].add(room_of(u, enroll_base))
    test_room = {u.path: room_of(u, test_base) for u in tests}
    by_room: dict[str, list[TestResult]] = defaultdict(list)
    for r in report.results:
        by_room[test_room[r.path]].append(r)
    out = []
    for room in sorted(by_room):
        cols = [i for i, n in enumerate(report.speakers) if room in rooms_of[n]]
        if cols:
            out.append(_figures(room, [report.speakers[i] for i in cols], cols,
                                by_room[room], rule))
    return out


def _figures(room: str, names: list[str], cols: list[int], results: list[TestResult],
             rule: AcceptRule) -> RoomFigures:
    scores = np.stack([r.scores for r in results if r.scores is not None])[:, cols]
    best_at = scores.argmax(axis=1)
    best = scores[np.arange(len(results)), best_at]
    enrolled = np.array([r.speaker in names for r in results])
    right = np.array([names[i] == r.speaker for i, r in zip(best_at, results, strict=True)])
    cutoffs = np.array([rule.cutoff(r.speech_s, len(names)) for r in results])
    named = best >= cutoffs
    strangers = ~enrolled
    target = (rule.false_accept if rule.threshold is None
              else float(named[strangers].mean()) if strangers.any() else 0.0)
    threshold, best_right = best_single(best, right & enrolled, strangers, target)
    return RoomFigures(room, len(names), int(strangers.sum()), int((named & strangers).sum()),
                       int(enrolled.sum()), int((named & enrolled & right).sum()),
                       threshold, best_right, target)


def best_single(best: np.ndarray, right: np.ndarray, strangers: np.ndarray,
                target: float) -> tuple[float | None, int]:
    """The raw threshold naming the most ``right`` items while naming at most
    ``target`` of the strangers, and that count. Candidates: every best score."""
    n_strangers = max(1, int(strangers.sum()))
    top: tuple[float | None, int] = (None, 0)
    for t in np.unique(best):
        named = best >= t
        if (named & strangers).sum() / n_strangers <= target:
            count = int((named & right).sum())
            if count > top[1]:
                top = (float(t), count)
    return top


def room_lines(rooms: list[RoomFigures]) -> list[str]:
    def pct(k: int, n: int) -> str:
        return f"{100 * k / n:.1f}% ({k} of {n})" if n else "n/a"

    lines = ["per room (its own enrolled speakers as the candidates):"]
    for f in rooms:
        at = "none" if f.best_threshold is None else f"{f.best_threshold:.4f}"
        lines.append(
            f"  {f.room}: {f.n_speakers} enrolled; strangers named "
            f"{pct(f.strangers_named, f.n_strangers)}; enrolled right "
            f"{pct(f.enrolled_right, f.n_enrolled_tests)}; best one threshold at <= "
            f"{100 * f.target_false_accept:g}% strangers: right "
            f"{pct(f.best_threshold_right, f.n_enrolled_tests)} (at {at})")
    return lines
