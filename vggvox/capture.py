"""Capture from an input device with PyAudio: 16 kHz mono int16 blocks to a sink.

The satellite (``vggvox-client satellite``) captures with this; PortAudio's
callback thread only hands each block to the sink (a ring buffer's write: a
copy) and counts PortAudio's input-overflow flag. PortAudio (PulseAudio or
ALSA beneath it) resamples the device to 16 kHz. A device is named by index, by
its exact name, or by part of its name.

The library has no threads of its own: PortAudio's are PortAudio's. What keeps a
capture running (and a file that stands in for a device) is its caller's
(``vggvox_client.satellite_capture``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from vggvox.audio import SAMPLE_RATE
from vggvox.errors import VggvoxError

Sink = Callable[[np.ndarray], None]


class CaptureError(VggvoxError):
    """The device cannot deliver audio: none, not found, or it failed to open."""


class NoInputDevice(CaptureError):
    """This machine has no input device at all (its caller may say what to use instead)."""


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
        self.index: int | None = None
        """PortAudio's index of the device opened last (None: the default)."""
        self._pa: Any = None
        self._stream: Any = None

    def start(self, sink: Sink) -> None:
        import pyaudio

        with quiet_stderr():
            self._pa = pyaudio.PyAudio()
        try:
            self.index = index = find_device(self._pa, self.device)
            if index is None and self._pa.get_device_count() == 0:
                raise NoInputDevice("no audio input device on this machine")
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

    def describe(self) -> str:
        return f"input device {self.device!r}" if self.device is not None else "the default input"

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
