"""The segmenter: 16 kHz PCM in, speech starts, due windows and speech ends out.

It runs the VAD gate frame by frame and asks the pure ``due_windows`` which
windows are due. A window carries a copy of its own samples, taken from a short
history the segmenter keeps, so whoever embeds it later (another thread, after
a queue) can never find its audio overwritten. That is what makes a finite
stream lossless whatever the speed it is fed at.

Blocks may have any size: framing follows the absolute sample index, so the
same samples give the same items however they are cut into blocks.

Given a ``FeatureTrack`` (features.py) it also computes the stream's fbank
frames once, as the audio arrives, and each window carries its frames too: the
embedder then skips the front-end for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.stream.features import FeatureTrack
from vggvox.stream.tail import Tail
from vggvox.stream.vad import SpeechEnd, SpeechStart, VadConfig, VadGate
from vggvox.stream.windows import WindowConfig, due_windows


@dataclass(frozen=True)
class Window:
    """A window due for embedding: samples [start, end) of the stream."""

    start: int
    end: int
    samples: np.ndarray
    """int16, 16 kHz."""
    features: np.ndarray | None = None
    """Its raw fbank frames from the stream's FeatureTrack (not yet mean-normalised),
    or None: the embedder computes them from ``samples``."""


Pending = SpeechStart | Window | SpeechEnd
"""What the segmenter hands on, in stream order."""


class Segmenter:
    """VAD gate plus window schedule for one stream. Not thread-safe: one owner."""

    def __init__(self, vad: VadConfig | None = None, windows: WindowConfig | None = None,
                 rate: int = SAMPLE_RATE, features: FeatureTrack | None = None) -> None:
        self.vad_config = vad or VadConfig()
        self.spec = (windows or WindowConfig()).spec(rate)
        self.rate = rate
        self.gate = VadGate.from_config(self.vad_config, rate)
        self.features = features
        # A final window ends at the last speech frame, up to a hangover before
        # the newest sample; keep that much more than one window, and a margin.
        self._keep = self.spec.length + self.gate.frame * (self.gate.hangover + 4) + rate
        self._hist = Tail(2 * self._keep)
        self.reset()

    def reset(self, position: int = 0) -> None:
        """Forget everything; the next sample pushed is number ``position``."""
        self.gate = VadGate.from_config(self.vad_config, self.rate)
        self.position = position
        """Absolute index one past the newest sample pushed."""
        self._hist.reset(position)
        self._seg_start: int | None = None
        self._last_end: int | None = None
        if self.features is not None:
            self.features.reset(position)

    @property
    def in_speech(self) -> bool:
        return self._seg_start is not None

    def push(self, samples: np.ndarray, start: int | None = None) -> list[Pending]:
        """Feed int16 samples; ``start`` is their absolute index (default: right after
        the previous block). A jump forward (audio lost upstream) closes any open
        segment at its last speech and restarts the gate there.
        """
        out: list[Pending] = []
        if start is not None and start != self.position:
            if start < self.position:
                raise ValueError(f"samples must not go back: got {start}, at {self.position}")
            out += self._close()
            self.reset(start)
        x = np.asarray(samples, dtype=np.int16)
        self._hist.append(x)
        if self.features is not None:
            self.features.push(x)
        base = self.position
        self.position += len(x)
        frame = self.gate.frame
        for i in range(0, len(x), frame):
            chunk = x[i : i + frame]
            for ev in self.gate.process(base + i, chunk):
                out += self._on_gate(ev)
            if self._seg_start is not None:
                # Within an open segment a window is due as soon as its last sample is
                # judged: waiting for the next speech frame would hold a window that ends
                # in a short pause for up to the hangover. Judged, not merely here: a
                # sample still waiting for a whole VAD frame may be the one that ends
                # the segment, and then the window must not be cut, whatever the sizes
                # of the blocks the audio came in (the same events from any source).
                out += self._windows(self.gate.judged, final=False)
        self._trim()
        return out

    def finish(self) -> list[Pending]:
        """End of stream: close an open segment (and its last window)."""
        out = self._close()
        self._trim()
        return out

    def _close(self) -> list[Pending]:
        out: list[Pending] = []
        for ev in self.gate.flush():
            out += self._on_gate(ev)
        return out

    def _on_gate(self, ev: SpeechStart | SpeechEnd) -> list[Pending]:
        if isinstance(ev, SpeechStart):
            self._seg_start, self._last_end = ev.sample, None
            return [ev]
        if self._seg_start is None:
            return []
        out: list[Pending] = [*self._windows(ev.sample, final=True), ev]
        self._seg_start = None
        return out

    def _windows(self, speech_end: int, final: bool) -> list[Pending]:
        assert self._seg_start is not None
        out: list[Pending] = []
        for start, end in due_windows(self.spec, self._seg_start, speech_end, self._last_end,
                                      final=final):
            self._last_end = end
            frames = self.features.frames(start, end) if self.features is not None else None
            out.append(Window(start, end, self._slice(start, end), frames))
        return out

    def _slice(self, start: int, end: int) -> np.ndarray:
        samples = self._hist.get(start, end)
        if samples is None:
            raise AssertionError(f"window [{start}, {end}) is outside the history "
                                 f"[{self._hist.start}, {self._hist.end})")
        return samples

    def _trim(self) -> None:
        self._hist.drop_before(self._hist.end - self._keep)
        if self.features is not None:
            self.features.trim(self._hist.start)
