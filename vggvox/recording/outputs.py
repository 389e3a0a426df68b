"""A recording's answer as files and text: RTTM, JSON and a per-speaker summary.

RTTM carries one line per labelled segment with the speaker's name (or
unknown label) in the name field; segments with no decision have no name, so
they are left out (the JSON keeps them, with ``"speaker": null``). Where two
voices were labelled in overlapped speech, both lines are written: RTTM allows
segments to overlap, and diarization scorers read it so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vggvox.recording.rttm import Segment, format_rttm
from vggvox.recording.segments import RecordingResult, SpeakerSegment


def rttm_text(result: RecordingResult) -> str:
    return format_rttm(_named(result.segments), result.file_id)


def _named(segments: Iterable[SpeakerSegment]) -> list[Segment]:
    # Cut pieces of one segment (at the edges of an overlap) are one line again.
    out: list[Segment] = []
    last: dict[str, int] = {}
    """Each speaker's latest line (index into out)."""
    for s in sorted((s for s in segments if s.speaker is not None and s.end > s.start),
                    key=lambda s: (s.start, s.end)):
        assert s.speaker is not None
        k = last.get(s.speaker)
        if k is not None and abs(out[k].end - s.start) < 1e-9:
            out[k] = Segment(out[k].start, s.end, s.speaker)
        else:
            last[s.speaker] = len(out)
            out.append(Segment(s.start, s.end, s.speaker))
    return out


def as_json(result: RecordingResult) -> dict[str, Any]:
    return {
        "path": result.path,
        "file_id": result.file_id,
        "duration_s": round(result.duration_s, 3),
        "compute_s": round(result.compute_s, 3),
        "segments": [s.as_dict() for s in result.segments],
        "overlaps": [[round(a, 3), round(b, 3)] for a, b in result.overlaps],
        "speakers": [{"speaker": t.speaker, "enrolled": t.enrolled, "talk_s": t.talk_s,
                      "turns": t.turns} for t in result.totals()],
        "suggestions": [{"label": s.label, "name": s.name, "score": round(s.score, 4)}
                        for s in result.suggestions],
        **result.extra,
    }


def summary_lines(result: RecordingResult) -> list[str]:
    """A few lines for a person: the speakers, their talk time and turns, suggestions."""
    speed = result.duration_s / result.compute_s if result.compute_s > 0 else float("inf")
    totals = result.totals()
    cached = ", window embeddings from the cache" if result.extra.get("cached") else ""
    lines = [f"{result.path or result.file_id}: {result.duration_s:.1f} s in "
             f"{result.compute_s:.1f} s ({speed:.0f}x real time{cached}); "
             f"{len(totals)} speakers"]
    width = max((len(t.speaker) for t in totals), default=7)
    for t in totals:
        share = 100 * t.talk_s / result.duration_s if result.duration_s else 0.0
        kind = "" if t.enrolled else "  (not enrolled)"
        lines.append(f"  {t.speaker:<{width}}  {_clock(t.talk_s)}  {share:4.1f} %  "
                     f"{t.turns} turn{'s' if t.turns != 1 else ''}{kind}")
    undecided = [s for s in result.segments if s.speaker is None]
    if undecided:
        n = len(undecided)
        lines.append(f"  {sum(s.duration for s in undecided):.1f} s of speech in {n} "
                     f"segment{'s' if n != 1 else ''} with no decision: the evidence is too weak")
    if result.overlaps:
        lines.append(f"  overlapped speech: {len(result.overlaps)} stretches, "
                     f"{sum(b - a for a, b in result.overlaps):.1f} s")
    # A remembered voice can be named afterwards; one of this run alone cannot.
    store = result.extra.get("remembered")
    then = (f"if it is: vggvox-client name {{label}} {{name}} --store {store}" if store
            else "to name it later, identify with --remember")
    lines += [f"  {s.label} sounds like {s.name} (score {s.score:.3f}): not applied; "
              + then.format(label=s.label, name=s.name) for s in result.suggestions]
    return lines


def timeline_lines(segments: Sequence[SpeakerSegment]) -> list[str]:
    """One line a segment: start, end, speaker, confidence, and its flags."""
    out = []
    for s in segments:
        conf = "" if s.confidence is None else f"  conf {s.confidence:.2f}"
        flag = "  overlap" if s.overlap else ""
        who = s.speaker or (f"(no decision; leans to {s.candidate})" if s.candidate
                            else "(no decision)")
        out.append(f"{_clock(s.start)} - {_clock(s.end)}  {who}{conf}{flag}")
    return out


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:06.3f}" if h else f"{m:02d}:{s:06.3f}"
