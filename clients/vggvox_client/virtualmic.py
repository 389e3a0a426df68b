"""A private PulseAudio server with a null sink whose monitor is the default source.

Audio played into the sink with ``paplay`` comes back out of the monitor, so
PyAudio (through ALSA's ``pulse`` device) captures exactly what is played:
a virtual microphone, for ``make demo`` and the capture tests. The server
lives in its own runtime folder and is reached through PULSE_SERVER, so it
touches no user session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SINK = "vggvox_virtual_mic"


class PulseServer:
    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.socket = runtime / "native"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = runtime / "pulse.log"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(self.runtime),
            "PULSE_STATE_PATH": str(self.runtime / "state"),
            "PULSE_COOKIE": str(self.runtime / "cookie"),
        }

    def apply_env(self) -> None:
        """Point this process (and its children) at the private server."""
        os.environ.update(self.env)

    def start(self, timeout: float = 15.0) -> None:
        if shutil.which("pulseaudio") is None:
            raise RuntimeError("pulseaudio is not installed (make test installs it)")
        self.runtime.mkdir(parents=True, exist_ok=True)
        args = [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1",
            "--disable-shm=yes", "--log-target=stderr",
            "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            "-L", f"module-null-sink sink_name={SINK} rate=16000 channels=1",
            "-L", "module-always-sink",
        ]
        if os.geteuid() == 0:
            # As root PulseAudio assumes system mode unless told otherwise (and warns).
            args.insert(1, "--system=false")
        env = {**os.environ, **self.env, "HOME": str(self.runtime)}
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {self.log.read_text()[-2000:]}")
            if self.socket.exists() and self.pactl("info").returncode == 0:
                self.pactl("set-default-sink", SINK)
                self.pactl("set-default-source", f"{SINK}.monitor")
                return
            time.sleep(0.1)
        raise RuntimeError(f"pulseaudio did not start in {timeout} s")

    def pactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=10)

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing a file into the sink; the caller waits on the process."""
        return subprocess.Popen(["paplay", f"--device={SINK}", str(wav)],
                                env={**os.environ, **self.env})

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        self.proc = None
