"""A deterministic voice-like test signal, so the reference embedding needs no data files."""

from __future__ import annotations

import numpy as np


def reference_signal(seconds: float = 3.0, rate: int = 16000) -> np.ndarray:
    """Harmonics of a gliding 120-180 Hz pitch, amplitude-modulated like syllables, plus noise."""
    rng = np.random.default_rng(1234)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    x = 0.1 * voice * envelope + 0.005 * rng.standard_normal(len(t))
    return x.astype(np.float32)
