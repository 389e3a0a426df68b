"""The pipeline's settings (vggvox.settings): the sections of vggvoxd.yaml that
``vggvox-client evaluate`` reads without the daemon, checked as the daemon checks them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from vggvox import settings as pipeline
from vggvox.errors import ConfigError
from vggvox.settings import PipelineSettings
from vggvox_client.cli import main
from vggvoxd import config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "vggvoxd.yaml"


def names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_daemon_is_the_pipeline_and_the_runtime_sections() -> None:
    assert issubclass(config.Settings, PipelineSettings)
    assert names(config.Settings) - names(PipelineSettings) == set(pipeline.RUNTIME_SECTIONS)
    assert pipeline.RANGES.items() <= config.RANGES.items()


def test_the_shipped_file_gives_the_daemons_pipeline() -> None:
    daemon, _ = config.load(SHIPPED)
    mine = pipeline.load(SHIPPED)
    assert mine == PipelineSettings() and pipeline.load(None) == mine
    for name in names(PipelineSettings):
        assert getattr(mine, name) == getattr(daemon, name), name
    assert mine.recognizer() == daemon.recognizer()


@pytest.mark.parametrize("data", [
    {"vad": {"aggresiveness": 2}},
    {"vda": {}},
    {"vad": {"aggressiveness": 7}},
    {"window": {"hop_s": "fast"}},
    {"window": {"max_batch": 0}},
    {"model": {"threads": True}},
    {"scoring": {"metric": "manhattan"}},
    {"scoring": {"calibration": 5}},
    {"turns": {"straddle": 2}},
    {"unknowns": {"max_clusters": 0}},
    {"enroll": {"max_audio_s": 1}},
    {"store": []},
    {"window": {"min_speech_s": 3.0}},
    [1, 2],
])
def test_a_bad_pipeline_key_is_the_daemons_message(data: object) -> None:
    with pytest.raises(ConfigError) as daemon:
        config.parse(data, "v.yaml")
    with pytest.raises(ConfigError) as mine:
        pipeline.parse(data, "v.yaml")
    assert str(mine.value) == str(daemon.value)


def test_the_runtime_sections_are_the_daemons_to_check() -> None:
    """Accepted by name (a misspelt section is still refused), read by the daemon alone."""
    data = {"audio": {"rate": 44100}, "sources": [{"name": "a b"}], "scoring": {"top_k": 3}}
    assert pipeline.parse(data).scoring.top_k == 3
    with pytest.raises(ConfigError, match="'audio.rate' only 16000"):
        config.parse(data)


def test_evaluate_reads_the_config_it_is_given(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text("vad:\n  aggressiveness: 7\n")
    # The settings are read first: neither the audio nor its truth is opened.
    code = main(["evaluate", str(tmp_path / "talk.wav"), "--rttm",
                 str(tmp_path / "talk.rttm"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{cfg}: 'vad.aggressiveness' must be 0..3, got 7" in err


def test_neither_the_library_nor_evaluate_imports_the_daemon() -> None:
    code = ("import sys, vggvox.settings, vggvox_client.evaluate\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'vggvoxd')\n"
            "assert not bad, bad\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
