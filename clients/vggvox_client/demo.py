"""``make demo``: vggvoxd on a virtual microphone, for a machine without one.

Starts a private PulseAudio server with a null sink, runs the daemon on its
monitor, enrolls two synthetic voices (espeak-ng), plays a short conversation
between them into the sink and prints the live events. Everything it starts
lives in a temporary folder and is stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from vggvox.audio import load_audio
from vggvox.protocol.events import SpeechEndEvent, SpeechStartEvent, TurnEvent
from vggvox.protocol.requests import StatusRequest
from vggvox_client.connection import ClientError, Connection
from vggvox_client.enroll import enroll
from vggvox_client.listen import emit
from vggvox_client.virtualmic import PulseServer

VOICES = {"alice": "en-us+f3", "bob": "en+m3"}
ENROLL = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
]
CONVERSATION = [
    ("alice", "Good morning Bob. Did you finish the report for the meeting today?"),
    ("bob", "Almost. I still need the numbers from the second quarter."),
    ("alice", "I will send them to you right after lunch, I promise."),
    ("bob", "Thank you. Then we can present it together this afternoon."),
]


def speak(text: str, voice: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True,
                   timeout=30)
    return path


def make_conversation(tmp: Path) -> Path:
    gap = np.zeros(8000, dtype=np.float32)
    parts = []
    for i, (who, text) in enumerate(CONVERSATION):
        parts += [load_audio(speak(text, VOICES[who], tmp / f"turn{i}.wav")), gap]
    out = tmp / "conversation.wav"
    sf.write(str(out), np.concatenate([gap, *parts]), 16000)
    return out


def wait_running(conn: Connection, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("vggvoxd exited during start-up")
        try:
            if conn.send(StatusRequest(), timeout=0.5)["state"] == "running":
                return
        except ClientError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"vggvoxd was not running after {timeout:g} s")


def main() -> int:
    for tool in ("pulseaudio", "paplay", "espeak-ng"):
        if shutil.which(tool) is None:
            print(f"demo: {tool} is missing (make demo installs it)", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="vggvox-demo-") as name:
        tmp = Path(name)
        pulse = PulseServer(tmp / "pulse")
        daemon: subprocess.Popen[bytes] | None = None
        try:
            print("starting a private PulseAudio server with a virtual microphone")
            pulse.start()
            conn = Connection(f"ipc://{tmp}/control.sock", f"ipc://{tmp}/events.sock")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "vggvoxd.main", "--device", "pulse",
                 "--events", conn.events, "--control", conn.control,
                 "--store", str(tmp / "voiceprints.db"), "--log-level", "WARNING"],
                env={**os.environ, **pulse.env})
            print("starting vggvoxd on it (loading the model)")
            wait_running(conn, daemon, 60)
            for who, voice in VOICES.items():
                files = [speak(t, voice, tmp / f"{who}{i}.wav") for i, t in enumerate(ENROLL)]
                reply = enroll(conn, who, files, None, False, 16 << 20)
                print(f"enrolled {who} ({voice}): {reply['speech_s']:.1f} s of speech")
            conversation = make_conversation(tmp)
            print(f"playing a {len(load_audio(conversation)) / 16000:.1f} s conversation "
                  "into the virtual microphone; live events:")
            # Turns, not per-window scores: a turn is the daemon's answer to "who is
            # speaking", updated as the evidence grows and marked final when it ends.
            sub = conn.subscribe([SpeechStartEvent.topic, SpeechEndEvent.topic, TurnEvent.topic])
            time.sleep(0.3)
            player = pulse.play(conversation)
            give_up = time.monotonic() + 120
            drain_until: float | None = None  # events trail the last sample a little
            heard: list[str] = []
            while time.monotonic() < give_up:
                ev = conn.receive(sub, 0.2)
                if ev is not None:
                    emit(ev, as_json=False)
                    if ev["type"] == TurnEvent.topic and ev["final"]:
                        heard.append(ev["speaker"] or ev["unknown"] or "nobody")
                elif player.poll() is not None:
                    drain_until = drain_until or time.monotonic() + 2.0
                    if time.monotonic() > drain_until:
                        break
            player.kill()
            sub.close()
            # A pause inside one person's speech ends a turn; the same speaker twice in
            # a row is still one person speaking, so the summary joins them.
            heard = [who for i, who in enumerate(heard) if i == 0 or who != heard[i - 1]]
            print(f"speakers heard, in order: {', '.join(heard) or 'none'} (spoken: "
                  f"{', '.join(who for who, _ in CONVERSATION)})")
            print("done: stopping the daemon and the sound server")
        finally:
            if daemon is not None:
                daemon.terminate()
                daemon.wait(timeout=10)
            pulse.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
