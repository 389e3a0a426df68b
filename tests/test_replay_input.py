"""``vggvox-client replay``'s input: the one format rule, lists, and exit statuses.

Issue 20: ``replay x.mp3`` and ``replay x.opus`` were refused as "neither audio
nor a list" (the suffix decided), ``.m4a`` everywhere; ``replay /tmp`` said "no
such file"; replay's errors had another prefix and status than the other
commands'. Against a real daemon: MP3, Opus and M4A replayed; a list where some
files fail goes on, names each with its list and line, and exits 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_proc import DaemonProcess
from speakers_fixture import conversation
from test_audio import encode_with_pyav

from vggvox.audio import SAMPLE_RATE, load_audio
from vggvox_client.cli import main


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("replayd")).start(timeout=60)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 8 s of a real two-speaker conversation (espeak-ng without ../shared)."""
    x = load_audio(conversation(tmp_path_factory.mktemp("speech")).stream)
    return x[: 8 * SAMPLE_RATE]


def replay(capsys: pytest.CaptureFixture[str], d: DaemonProcess, *argv: str
           ) -> tuple[int, list[dict], str]:
    code = main(["replay", *argv, "--json", "--control", d.conn.control, "--events",
                 d.conn.events])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("kind", ["mp3", "opus", "m4a"])
def test_compressed_audio_is_replayed(capsys: pytest.CaptureFixture[str], daemon: DaemonProcess,
                                      speech: np.ndarray, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"talk.{kind}"
    if kind == "mp3":
        sf.write(str(path), speech, SAMPLE_RATE, format="MP3")
    elif kind == "opus":
        sf.write(str(path), speech, SAMPLE_RATE, format="OGG", subtype="OPUS")
    else:
        encode_with_pyav(speech, path, "aac")
    code, events, err = replay(capsys, daemon, str(path))
    assert code == 0 and "Traceback" not in err, err
    assert any(e["type"] == "turn" for e in events), events


def test_a_list_where_some_files_fail_goes_on(capsys: pytest.CaptureFixture[str],
                                             daemon: DaemonProcess, speech: np.ndarray,
                                             tmp_path: Path) -> None:
    sf.write(str(tmp_path / "a.flac"), speech, SAMPLE_RATE)
    encode_with_pyav(speech, tmp_path / "b.m4a", "aac")
    (tmp_path / "notes.txt").write_text("not audio at all\n")
    lst = tmp_path / "list.csv"
    lst.write_text("filename,speaker\na.flac,alice\nmissing.wav,bob\nnotes.txt,carol\n"
                   "\nb.m4a,dave\n")
    code, events, err = replay(capsys, daemon, str(lst))
    assert code == 1, err  # partly replayed
    assert len({e["source"] for e in events}) == 2  # a.flac and b.m4a, each its stream
    lines = err.strip().splitlines()
    assert f"skipped {lst}:3: {tmp_path / 'missing.wav'}: file not found" in lines, err
    assert any(ln.startswith(f"skipped {lst}:4: {tmp_path / 'notes.txt'}: not readable as "
                             "audio") for ln in lines), err
    assert len(lines) == 2 and "Traceback" not in err, err

    # Nothing usable in it: one line, the common prefix, exit 2.
    lst.write_text("notes.txt\n")
    code, events, err = replay(capsys, daemon, str(lst))
    assert code == 2 and not events
    assert err.strip().splitlines()[-1] == (f"vggvox-client: error: replay {lst}: none of its "
                                            "1 files could be replayed"), err


def test_broken_audio_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                             daemon: DaemonProcess, speech: np.ndarray,
                                             tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(str(good), speech, SAMPLE_RATE)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:20000])
    code, events, err = replay(capsys, daemon, str(cut))
    assert code == 2 and not events
    assert err.startswith(f"vggvox-client: error: replay {cut}: truncated"), err
    assert len(err.strip().splitlines()) == 1
