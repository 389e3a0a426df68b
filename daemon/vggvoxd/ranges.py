"""The allowed range of each numeric or enumerated config key: a check that returns
what is wrong (named with the key by ``validate.section``), or None."""

from __future__ import annotations

from vggvox.calibration import FALSE_ACCEPT_RANGE
from vggvoxd.validate import Ranges

RANGES: Ranges = {
    ("audio", "rate"): lambda v: None if v == 16000 else "only 16000 is supported",
    ("audio", "block_ms"): lambda v: None if 5 <= v <= 200 else "must be 5..200",
    ("audio", "buffer_s"): lambda v: None if 5 <= v <= 600 else "must be 5..600",
    ("vad", "aggressiveness"): lambda v: None if 0 <= v <= 3 else "must be 0..3",
    ("vad", "frame_ms"): lambda v: None if v in (10, 20, 30) else "must be 10, 20 or 30",
    ("vad", "onset_ms"): lambda v: None if 0 <= v <= 2000 else "must be 0..2000",
    ("vad", "hangover_ms"): lambda v: None if 0 <= v <= 5000 else "must be 0..5000",
    ("window", "length_s"): lambda v: None if 0.5 <= v <= 20 else "must be 0.5..20",
    ("window", "hop_s"): lambda v: None if 0.05 <= v <= 20 else "must be 0.05..20",
    ("window", "min_speech_s"): lambda v: None if 0.2 <= v <= 20 else "must be 0.2..20",
    ("window", "max_batch"): lambda v: None if 1 <= v <= 64 else "must be 1..64",
    ("window", "queue"): lambda v: None if 1 <= v <= 10000 else "must be 1..10000",
    ("model", "threads"): lambda v: None if 1 <= v <= 64 else "must be 1..64",
    ("scoring", "metric"): lambda v: None if v in ("cosine", "euclidean")
    else "must be cosine or euclidean",
    ("scoring", "false_accept"): lambda v: None if FALSE_ACCEPT_RANGE[0] <= v
    <= FALSE_ACCEPT_RANGE[1] else "must be 1e-6..0.5",
    ("scoring", "threshold"): lambda v: None if v is None or -2 <= v <= 1 else "must be -2..1",
    ("scoring", "top_k"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("turns", "change_threshold"): lambda v: None if v is None or -2 <= v <= 1
    else "must be -2..1",
    ("turns", "change_windows"): lambda v: None if 1 <= v <= 20 else "must be 1..20",
    ("turns", "min_turn_windows"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("turns", "hysteresis"): lambda v: None if 1 <= v <= 20 else "must be 1..20",
    ("turns", "straddle"): lambda v: None if 0 <= v <= 1 else "must be 0..1",
    ("unknowns", "max_clusters"): lambda v: None if 1 <= v <= 100 else "must be 1..100",
    ("unknowns", "max_age_s"): lambda v: None if 10 <= v <= 86400 else "must be 10..86400",
    ("unknowns", "keep_speech_s"): lambda v: None if 3 <= v <= 300 else "must be 3..300",
    ("unknowns", "false_merge"): lambda v: None if 1e-6 <= v <= 0.5 else "must be 1e-6..0.5",
    ("unknowns", "threshold"): lambda v: None if v is None or -1 <= v <= 1 else "must be -1..1",
    ("enroll", "min_speech_s"): lambda v: None if 0.5 <= v <= 600 else "must be 0.5..600",
    ("enroll", "max_live_s"): lambda v: None if 1 <= v <= 600 else "must be 1..600",
    ("enroll", "max_audio_s"): lambda v: None if 5 <= v <= 600 else "must be 5..600",
    ("endpoints", "events_hwm"): lambda v: None if 1 <= v <= 1_000_000 else "must be 1..1e6",
    ("endpoints", "max_request_bytes"): lambda v: None if 1024 <= v <= 1 << 30
    else "must be 1 KiB..1 GiB",
    ("status", "interval_s"): lambda v: None if 0.2 <= v <= 3600 else "must be 0.2..3600",
    ("logging", "level"): lambda v: None if v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
    else "must be DEBUG, INFO, WARNING or ERROR",
}
