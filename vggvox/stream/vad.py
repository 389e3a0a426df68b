"""The VAD gate. webrtcvad decides speech per 10/20/30 ms frame; an onset and
a hangover turn those decisions into speech segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

FRAME_MS = (10, 20, 30)
RATES = (8000, 16000, 32000, 48000)


class VadFrameError(ValueError):
    """A frame length webrtcvad does not accept."""


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2
    """webrtcvad aggressiveness, 0 (least) to 3 (most eager to call audio non-speech)."""
    frame_ms: int = 30
    """VAD frame: 10, 20 or 30 ms."""
    onset_ms: int = 90
    """Speech needed to open a segment."""
    hangover_ms: int = 300
    """Non-speech needed to close a segment."""


@dataclass(frozen=True)
class SpeechStart:
    sample: int
    """First sample of the first speech frame of the onset."""


@dataclass(frozen=True)
class SpeechEnd:
    sample: int
    """One past the last sample of the last speech frame."""


class VadGate:
    """Feed int16 blocks of any size; get speech starts and ends, sample-exact.

    - ``onset_frames`` consecutive speech frames open a segment (dated to the
      first of them), which filters out clicks;
    - ``hangover_frames`` consecutive non-speech frames close it (dated to the
      end of the last speech frame), which bridges short pauses.
    """

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30, onset_ms: int = 90,
                 hangover_ms: int = 300, rate: int = 16000) -> None:
        if frame_ms not in FRAME_MS:
            raise VadFrameError(f"frame_ms must be one of {FRAME_MS}, got {frame_ms}")
        if rate not in RATES:
            raise VadFrameError(f"rate must be one of {RATES}, got {rate}")
        self.frame = rate * frame_ms // 1000
        self.onset = max(1, onset_ms // frame_ms)
        self.hangover = max(1, hangover_ms // frame_ms)
        self.rate = rate
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = np.zeros(0, dtype=np.int16)
        self._next = 0  # absolute index of the first pending sample
        self.in_speech = False
        self.last_speech_end = 0
        """End of the newest speech frame seen: windows never reach past it."""
        self._run = 0  # consecutive frames against the current state
        self._run_start = 0

    @classmethod
    def from_config(cls, config: VadConfig, rate: int = 16000) -> VadGate:
        return cls(config.aggressiveness, config.frame_ms, config.onset_ms,
                   config.hangover_ms, rate)

    def is_speech(self, frame: np.ndarray) -> bool:
        if len(frame) != self.frame:
            raise VadFrameError(f"a frame must be {self.frame} samples, got {len(frame)}")
        return self._vad.is_speech(frame.tobytes(), self.rate)

    @property
    def judged(self) -> int:
        """Absolute index one past the last sample framed and judged (the rest waits for
        a whole frame)."""
        return self._next

    def process(self, start: int, samples: np.ndarray) -> list[SpeechStart | SpeechEnd]:
        if start != self._next + len(self._pending):
            # A gap (dropped audio): restart framing at the new position.
            self._pending, self._next = np.zeros(0, dtype=np.int16), start
        buf = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        events: list[SpeechStart | SpeechEnd] = []
        n = len(buf) // self.frame
        for i in range(n):
            frame_start = self._next + i * self.frame
            speech = self.is_speech(buf[i * self.frame : (i + 1) * self.frame])
            if speech:
                self.last_speech_end = frame_start + self.frame
            if speech != self.in_speech:
                if self._run == 0:
                    self._run_start = frame_start
                self._run += 1
                if self.in_speech and self._run >= self.hangover:
                    self.in_speech, self._run = False, 0
                    events.append(SpeechEnd(self.last_speech_end))
                elif not self.in_speech and self._run >= self.onset:
                    self.in_speech, self._run = True, 0
                    events.append(SpeechStart(self._run_start))
            else:
                self._run = 0
        self._pending = buf[n * self.frame :]
        self._next += n * self.frame
        return events

    def flush(self) -> list[SpeechStart | SpeechEnd]:
        """End of stream: close an open segment."""
        if self.in_speech:
            self.in_speech, self._run = False, 0
            return [SpeechEnd(self.last_speech_end)]
        return []


def speech_segments(gate: VadGate, samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each speech segment in a whole clip, through a fresh gate."""
    segments, start = [], None
    for ev in gate.process(0, samples) + gate.flush():
        if isinstance(ev, SpeechStart):
            start = ev.sample
        elif start is not None:
            segments.append((start, ev.sample))
            start = None
    return segments
