"""Audio file loading: any format libsndfile reads, resampled to 16 kHz mono.

Resampling uses soxr (the SoX resampler, high quality), never linear
interpolation.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from vggvox.errors import AudioError

SAMPLE_RATE = 16000
# Below this RMS level (dBFS) a file holds no usable speech. The quietest real
# speech in the development set sits near -49 dBFS; digital silence and dither
# are far lower.
SILENCE_DBFS = -65.0

# libsndfile logs "data : 128000 (should be 29956)" when a WAV header promises
# more data than the file holds.
_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def dbfs(x: np.ndarray) -> float:
    """RMS level of float samples in [-1, 1], in dB relative to full scale."""
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (clipped)."""
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2")


def to_float(pcm: np.ndarray) -> np.ndarray:
    """16-bit PCM as float32 samples in [-1, 1)."""
    return pcm.astype(np.float32) / 32768


def to_mono_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Average the channels and resample to 16 kHz, as float32."""
    if x.ndim == 2:
        x = x.mean(axis=1)
    x = np.asarray(x, dtype=np.float32)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return x


def load_audio(path: str | Path) -> np.ndarray:
    """Read an audio file as 16 kHz mono float32 in [-1, 1].

    Raises AudioError naming the file and the reason when it is missing,
    not audio, truncated, empty or silent.
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise AudioError(name, "file not found")
    if not p.is_file():
        raise AudioError(name, "not a regular file")
    try:
        info = sf.info(name)
        truncated = _TRUNCATED.search(info.extra_info)
        if truncated:
            raise AudioError(
                name,
                f"truncated: the header declares {truncated.group(1)} data bytes "
                f"but the file holds {truncated.group(2)}",
            )
        x, rate = sf.read(name, dtype="float32", always_2d=False)
    except sf.LibsndfileError as e:
        reason = str(e).replace(f"Error opening {name!r}: ", "").strip()
        if "lost sync" in reason or "unexpected end" in reason.lower():
            reason = f"truncated or corrupt ({reason})"
        raise AudioError(name, f"not readable as audio: {reason}") from None
    except (RuntimeError, ValueError) as e:
        raise AudioError(name, f"not readable as audio: {e}") from None
    if x.size == 0:
        raise AudioError(name, "empty: no samples")
    x = to_mono_16k(x, rate)
    level = dbfs(x)
    if level < SILENCE_DBFS:
        raise AudioError(name, f"silent: level {level:.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS")
    return x
