"""``vggvox-client calibrate`` on real speech: it fits and checks a calibration from a
list of recordings, writes a file a real daemon uses (``scoring.calibration`` and a
source's own ``calibration``), and refuses too little data in one line, with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess

from vggvox.calibration import Calibration
from vggvox.eval.fitcheck import MIN_SPEAKERS
from vggvox_client import calibrate

SPEAKERS = 30
"""LibriSpeech train-clean-100 speakers (two recordings of about 6 s each): enough for
the tail fit (a few seconds of embedding), few enough for a quick test."""


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    calibrate.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["calibrate", *argv])


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = calibrate.run(parse(argv))
    return code, out.getvalue(), err.getvalue()


def write_list(speech: Path, path: Path, source: str, speakers: int, per_speaker: int) -> Path:
    with (speech / "manifest.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == source]
    names = sorted({r["speaker"] for r in rows})[:speakers]
    chosen = [r for n in names for r in [r for r in rows if r["speaker"] == n][:per_speaker]]
    path.write_text("".join(f"{speech / r['path']} {r['speaker']}\n" for r in chosen))
    return path


@pytest.fixture(scope="module")
def fitted(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, str, Path]:
    """(the calibration written, what the command printed, a speech file)."""
    tmp = tmp_path_factory.mktemp("calibrate")
    recordings = write_list(speech_dir, tmp / "recordings.csv",
                            "librispeech-train-clean-100-halves", SPEAKERS, 2)
    out = tmp / "home.calibration.yaml"
    code, printed, _ = run(["--list", str(recordings), "--out", str(out)])
    assert code == 0, printed
    first = Path(recordings.read_text().split()[0])
    return out, printed, first


def test_calibrate_writes_a_checked_calibration(fitted: tuple[Path, str, Path]) -> None:
    out, printed, _ = fitted
    cal = Calibration.load(out)
    assert cal.model == "campplus-int8" and "recordings.csv" in cal.fitted_on
    # The check on the held-apart half: the measured rate against each setting.
    for setting in ("0.100%", "1.000%", "5.000%"):
        assert f"setting {setting}  measured" in printed
    assert "checking on" in printed and "held-apart speakers" in printed
    assert "enrolled right" in printed and f"wrote {out}" in printed
    checks = yaml.safe_load(out.read_text())
    assert {r["setting"] for r in checks["check"]} == {0.001, 0.01, 0.05}
    assert all(r["stranger_trials"] > 0 for r in checks["check"] if r["enrolled_share"] == 0.5)


def test_the_default_file_is_named_after_the_model(tmp_path: Path) -> None:
    assert calibrate.default_out("campplus") == Path("campplus.calibration.yaml")
    assert calibrate.default_out(str(tmp_path / "my.yaml")) == Path("my.calibration.yaml")


def test_a_daemon_uses_it_for_every_source_and_a_source_its_own(
        fitted: tuple[Path, str, Path], tmp_path: Path) -> None:
    out, _, speech = fitted
    office = tmp_path / "office.calibration.yaml"
    shutil.copyfile(out, office)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "scoring": {"calibration": str(out)},
        "sources": [{"name": "office", "uri": f"file:{speech}", "calibration": str(office)},
                    {"name": "hall", "uri": f"file:{speech}"}]}))
    d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)]).start()
    try:
        status = d.conn.request("status")
    finally:
        d.stop()
    accept = "calibrated to accept 0.5% of strangers"
    assert status["scoring"] == f"{accept} (calibration {out})"
    assert status["sources"]["hall"]["scoring"] == f"{accept} (calibration {out})"
    assert status["sources"]["office"]["scoring"] == f"{accept} (calibration {office})"
    log = d.output()
    assert f"{accept} (calibration {out})" in log
    assert f"source office: its own calibration {office}" in log


def test_another_models_calibration_stops_the_daemon_naming_the_key(
        fitted: tuple[Path, str, Path], tmp_path: Path) -> None:
    out, _, _ = fitted
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"name": "ge2e"},
                                   "scoring": {"calibration": str(out)}}))
    r = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--config", str(cfg),
                        "--store", str(tmp_path / "v.db")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'scoring.calibration'" in lines[0] and str(out) in lines[0]
    assert "a calibration of 'campplus-int8', not of the model.name's 'ge2e-resemblyzer'" \
        in lines[0]


def test_too_few_speakers_is_one_line_and_status_2(speech_dir: Path, tmp_path: Path) -> None:
    small = write_list(speech_dir, tmp_path / "small.csv", "vctk", 4, 3)
    code, printed, err = run(["--list", str(small), "--out", str(tmp_path / "x.yaml")])
    assert code == 2 and not printed
    assert err.count("\n") == 1 and str(small) in err
    assert f"needs at least {MIN_SPEAKERS} speakers with 2 or more recordings each" in err
    assert not (tmp_path / "x.yaml").exists()


def test_too_little_speech_is_one_line_and_status_2(speech_dir: Path, tmp_path: Path) -> None:
    """Enough speakers, but far too few stranger scores for the tail: refused after the
    fit half is embedded, saying how much more is needed."""
    small = write_list(speech_dir, tmp_path / "small.csv", "fsdd", 6, 2)
    code, _, err = run(["--list", str(small), "--out", str(tmp_path / "x.yaml")])
    assert code == 2
    assert err.count("\n") == 1 and "too little speech" in err
    assert "the fit needs 1000 in each" in err and "times as much speech" in err
    assert not (tmp_path / "x.yaml").exists()
