"""Capture from an input device with PyAudio: 16 kHz mono int16 blocks to a sink.

The satellite (``vggvox-client satellite``) captures with this; PortAudio's
callback thread only hands each block to the sink (a ring buffer's write: a
copy) and counts PortAudio's input-overflow flag. PortAudio (PulseAudio or
ALSA beneath it) resamples the device to 16 kHz. A device is named by index, by
its exact name, or by part of its name.

``FileInput`` stands in for a device where there is none (tests, demos,
benchmarks): a file decoded by ``audio.load_audio`` and delivered at real-time
pace from a thread of the caller's, in the same blocks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16

Sink = Callable[[np.ndarray], None]


class CaptureError(Exception):
    """The device cannot deliver audio: none, not found, or it failed to open."""


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Hide what PortAudio prints on stderr while it probes every ALSA and JACK
    backend (hundreds of harmless failures on each start)."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def find_device(pa: Any, device: str | int | None) -> int | None:
    """PortAudio's index of the input ``device`` (None: the default); a CaptureError
    listing the inputs when there is no such one."""
    if device is None:
        return None
    inputs = [(i, pa.get_device_info_by_index(i)) for i in range(pa.get_device_count())]
    inputs = [(i, d) for i, d in inputs if d.get("maxInputChannels", 0) > 0]
    if isinstance(device, int) or str(device).isdigit():
        if any(i == int(device) for i, _ in inputs):
            return int(device)
    else:
        exact = [i for i, d in inputs if d["name"] == device]
        partial = [i for i, d in inputs if str(device).lower() in d["name"].lower()]
        if exact or partial:
            return (exact or partial)[0]
    names = ", ".join(f"{i}: {d['name']}" for i, d in inputs) or "none"
    raise CaptureError(f"no input device {device!r} (input devices: {names})")


class DeviceInput:
    """One input device, opened by ``start`` (again after a failure: a fresh PortAudio
    each time, which sees devices and sound servers that appeared since)."""

    def __init__(self, device: str | int | None = None, block_ms: int = 20) -> None:
        self.device = device
        self.frames_per_block = SAMPLE_RATE * block_ms // 1000
        self.overflows = 0
        self._pa: Any = None
        self._stream: Any = None

    def start(self, sink: Sink) -> None:
        import pyaudio

        with quiet_stderr():
            self._pa = pyaudio.PyAudio()
        try:
            index = find_device(self._pa, self.device)
            if index is None and self._pa.get_device_count() == 0:
                raise CaptureError("no audio input device on this machine")
            overflow = pyaudio.paInputOverflow

            def callback(data: bytes, frames: int, info: Any, status: int) -> tuple[None, int]:
                if status & overflow:
                    self.overflows += 1
                sink(np.frombuffer(data, dtype=np.int16))
                return None, pyaudio.paContinue

            with quiet_stderr():
                self._stream = self._pa.open(
                    format=pyaudio.paInt16, channels=1, rate=SAMPLE_RATE, input=True,
                    input_device_index=index, frames_per_buffer=self.frames_per_block,
                    stream_callback=callback)
            self._stream.start_stream()
        except CaptureError:
            self.stop()
            raise
        except (OSError, ValueError) as e:
            self.stop()
            raise CaptureError(f"cannot open input device {self.device or 'default'}: {e}") \
                from e

    def alive(self) -> bool:
        try:
            return self._stream is not None and self._stream.is_active()
        except OSError:
            return False

    def stop(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass  # a device that vanished cannot be closed cleanly; it is gone anyway
        if pa is not None:
            pa.terminate()


class FileInput:
    """A file delivered at real-time pace, as a device would deliver it, in blocks;
    ``loop``: again from its start when it ends (else it stops, ``alive`` False)."""

    def __init__(self, path: Path, block_ms: int = 20, loop: bool = False) -> None:
        self.path = Path(path)
        self.block = SAMPLE_RATE * block_ms // 1000
        self.loop = loop
        self.overflows = 0
        try:
            self._samples = to_int16(load_audio(self.path))
        except Exception as e:  # any reason it cannot be audio: one line
            raise CaptureError(f"{self.path}: cannot read it as audio: {e}") from None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(sink,), daemon=True,
                                        name=f"file:{self.path.name}")
        self._thread.start()

    def _run(self, sink: Sink) -> None:
        t0, pos, total = time.monotonic(), 0, len(self._samples)
        while not self._stop.is_set() and (pos < total or self.loop):
            self._stop.wait(max(0.0, t0 + pos / SAMPLE_RATE - time.monotonic()))
            at = pos % total if self.loop else pos
            sink(self._samples[at:at + self.block])
            pos += min(self.block, total - at)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
