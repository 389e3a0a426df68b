"""Sliding windows over speech, as a pure function of sample indices.

Within a speech segment the first window is due once ``min_speech`` samples of
it exist; then one every ``hop``. A window covers the last ``length`` samples
up to its end (less at the start of a segment). While the segment is open a
window may end in a pause shorter than the VAD's hangover; once it has closed,
a last window ends at the end of its speech, never in the silence after it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowConfig:
    length_s: float = 2.0
    """Window length in seconds."""
    hop_s: float = 0.5
    """Time between two decisions within speech."""
    min_speech_s: float = 1.0
    """Speech needed in a segment before its first decision."""

    def spec(self, rate: int = 16000) -> WindowSpec:
        return WindowSpec(round(self.length_s * rate), round(self.hop_s * rate),
                          round(self.min_speech_s * rate))


@dataclass(frozen=True)
class WindowSpec:
    length: int
    hop: int
    min_speech: int

    def __post_init__(self) -> None:
        if not 0 < self.min_speech <= self.length or self.hop <= 0:
            raise ValueError(f"need 0 < min_speech <= length and hop > 0: {self}")


def due_windows(
    spec: WindowSpec, seg_start: int, speech_end: int, last_end: int | None, final: bool = False
) -> list[tuple[int, int]]:
    """Windows (start, end) due in a segment, after the one ending at ``last_end``.

    ``speech_end`` is how far the segment's audio reaches: the newest sample
    while it is open, the end of its last speech frame once it has closed
    (``final``). Then a last window covers the tail if at least half a hop of
    speech came after the previous window.
    """
    first_end = seg_start + spec.min_speech
    out: list[tuple[int, int]] = []
    end = first_end if last_end is None else last_end + spec.hop
    while end <= speech_end:
        out.append((max(seg_start, end - spec.length), end))
        end += spec.hop
    done = out[-1][1] if out else last_end
    if final and speech_end >= first_end and (done is None or speech_end - done >= spec.hop // 2):
        out.append((max(seg_start, speech_end - spec.length), speech_end))
    return out
