"""`make demo`, a newcomer's first run, as they run it: a private PulseAudio server,
the daemon on its virtual microphone, two synthetic voices enrolled and a
conversation between them played in, turns printed live."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vggvox_client.demo import CONVERSATION


@pytest.mark.skipif(not all(shutil.which(t) for t in ("pulseaudio", "paplay", "espeak-ng")),
                    reason="pulseaudio, paplay and espeak-ng are needed (make test installs them)")
def test_the_demo_names_the_speakers_of_its_conversation_in_order() -> None:
    done = subprocess.run([sys.executable, "-m", "vggvox_client.demo"], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "enrolled alice" in done.stdout and "enrolled bob" in done.stdout
    assert " turn " in done.stdout and " final" in done.stdout
    spoken = ", ".join(who for who, _ in CONVERSATION)
    summary = f"speakers heard, in order: {spoken} (spoken: {spoken})"
    assert summary in done.stdout, done.stdout[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
