"""Shared test fixtures: the shared data folders and espeak-ng voices."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import soundfile as sf

if TYPE_CHECKING:
    from pgserver import PostgresServer
    from speakers_fixture import Conversation

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FIXTURES = SHARED / "fixtures"
SPEECH = SHARED / "speech"

WORKERS = 2
"""pytest-xdist workers for a plain ``pytest`` (``make test``, ``.ci/run``): most of the
suite's time is waiting (daemons and servers starting, a watchdog's 30 s, a broker's
outage), not the CPU, so two workers overlap it (18.7 min in one process, then 9.3 min on
two, one after the other on the same 2-core machine under the same load). Set here
rather than in setup.cfg's addopts so that ``-n 0``, ``-n 4``, ``--pdb`` and
``-p no:xdist`` (or a pytest without xdist) still run as asked."""


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Two workers, one test file to each at a time (``loadfile``: a module's fixture, a
    booted container or one daemon for many tests, is set up once), unless the command
    line says otherwise. Runs before xdist's own hook, which turns the count into workers."""
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return  # no xdist, or a worker itself: workers start no workers
    if config.option.numprocesses is None and not config.option.usepdb:
        config.option.numprocesses = WORKERS
        if config.option.dist == "no":
            config.option.dist = "loadfile"


def copy_tracked(dest: Path) -> bool:
    """The checkout's files as a clone (or a release) holds them, into ``dest``: tracked,
    or new and not ignored; a build/ folder or a venv left in the tree stays out.
    False where this is not a git checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, timeout=30)
    if listed.returncode != 0:
        return False
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():  # a file deleted but not yet committed is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, dest / name)
            shutil.copymode(ROOT / name, dest / name)
    return True


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "manifest.csv").exists():
        pytest.skip(f"shared fixtures not found at {FIXTURES} (a fresh clone has no ../shared)")
    return FIXTURES


@pytest.fixture
def convo(tmp_path: Path) -> Conversation:
    """A two-speaker conversation with its truth and each speaker's enrollment clips
    (``speakers_fixture``: real speech where ../shared has it, espeak-ng voices else)."""
    from speakers_fixture import conversation  # it imports this module: not at the top

    return conversation(tmp_path)


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SPEECH / "manifest.csv").exists():
        pytest.skip(f"shared speech data not found at {SPEECH} (a fresh clone has no ../shared)")
    return SPEECH


# Two clearly different espeak-ng voices, and sentences long enough for enrollment.
VOICES = {"alice": "en-us+f3", "bob": "en+m3"}
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "We will meet again on Tuesday morning to review the results of the experiment.",
]


def speak(text: str, voice: str, path: Path) -> Path:
    """Render ``text`` with espeak-ng into a wav file (22.05 kHz, as espeak writes it)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, timeout=30)
    return path


@pytest.fixture(scope="session")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Three utterances for each of two synthetic speakers."""
    out = tmp_path_factory.mktemp("voices")
    return {
        name: [speak(s, v, out / f"{name}_{i}.wav") for i, s in enumerate(SENTENCES)]
        for name, v in VOICES.items()
    }


def write_wav(path: Path, x: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), x, rate, subtype=subtype)
    return path


def _private_postgres() -> Iterator[PostgresServer]:
    import pgserver

    why = pgserver.available()
    if why:
        pytest.skip(why)
    with pgserver.PostgresServer() as pg:
        yield pg


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for one test (``pgserver.py``); skipped where Debian's
    PostgreSQL is not installed (make test installs it)."""
    yield from _private_postgres()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for a test module (``postgres``'s, shared): each
    test makes a database of its own (``PostgresServer.new_database``)."""
    yield from _private_postgres()
