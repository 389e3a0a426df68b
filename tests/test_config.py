"""Daemon configuration: the shipped file, defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vggvoxd import config
from vggvoxd.config import ConfigError, Settings

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "vggvoxd.yaml"


def test_shipped_file_documents_every_key_with_its_default() -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    assert config.parse(data, str(SHIPPED)) == Settings()
    assert data["sources"] == []
    for section in config.dataclasses.fields(Settings):
        if section.name == "sources":
            continue  # a list of entries, not a section of keys
        keys = {f.name for f in config.dataclasses.fields(section.default_factory())}
        assert set(data[section.name]) == keys, section.name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vad": {"aggresiveness": 2}}, "unknown key 'vad.aggresiveness'"),
        ({"vda": {}}, "unknown section 'vda'"),
        ({"vad": {"aggressiveness": 7}}, "'vad.aggressiveness' must be 0..3, got 7"),
        ({"vad": {"frame_ms": 25}}, "'vad.frame_ms' must be 10, 20 or 30"),
        ({"window": {"hop_s": "fast"}}, "'window.hop_s' must be"),
        ({"model": {"threads": True}}, "'model.threads' must be"),
        ({"audio": {"rate": 44100}}, "'audio.rate' only 16000"),
        ({"scoring": {"metric": "manhattan"}}, "'scoring.metric' must be cosine or euclidean"),
        ({"window": {"min_speech_s": 3.0}}, "'window.min_speech_s' must not exceed"),
        ({"audio": []}, "'audio' must be a mapping"),
        ([1, 2], "top level must be a mapping"),
        ({"sources": {"name": "a"}}, "'sources' must be a list"),
        ({"sources": [{"device": 2}]}, r"'sources\[0\]' must be a mapping with a 'name'"),
        ({"sources": [{"name": "a"}, {"name": "a"}]}, r"'sources\[1\].name' 'a' is used twice"),
        ({"sources": [{"name": "a b"}]}, r"'sources\[0\].name' must be 1 to 64 letters"),
        ({"sources": [{"name": "a", "mic": 1}]}, r"unknown key 'sources\[0\].mic'"),
        ({"sources": [{"name": "a", "uri": "http://x"}]}, "must be file:PATH or stdin"),
        ({"sources": [{"name": "a", "uri": "stdin", "device": 1}]}, "both 'device' and 'uri'"),
        ({"sources": [{"name": "a", "uri": "stdin"}, {"name": "b", "uri": "stdin"}]},
         "more than one 'uri: stdin'"),
    ],
)
def test_bad_values_name_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse(data, "test.yaml")


def test_load_from_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "vggvoxd.yaml"
    f.write_text("scoring:\n  threshold: 0.5\naudio:\n  device: pulse\n")
    settings, found = config.load(f)
    assert found == f and settings.scoring.threshold == 0.5 and settings.audio.device == "pulse"
    settings = config.override(settings, "store", path=str(tmp_path / "x.db"))
    assert settings.store_path() == tmp_path / "x.db"
    with pytest.raises(config.dataclasses.FrozenInstanceError):
        settings.vad.aggressiveness = 3  # type: ignore[misc]


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("vad: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        config.load(f)


def test_systemd_directories(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    s = Settings()
    assert s.store_path() == tmp_path / "state" / "voiceprints.db"
    assert s.endpoint("events") == f"ipc://{tmp_path}/run/events.sock"


def test_the_socket_folder_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """Issue 8: a runtime folder another user owns or may write to is refused."""
    import os

    mine = tmp_path / "run" / "vggvox"
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(mine))
    assert Settings().endpoint("control") == f"ipc://{mine}/control.sock"
    assert mine.stat().st_mode & 0o777 == 0o700
    open_to_all = tmp_path / "open"
    open_to_all.mkdir()
    open_to_all.chmod(0o777)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(open_to_all))
    with pytest.raises(ConfigError, match="others may write to it"):
        Settings().endpoint("control")
    if os.getuid() == 0:  # only root can make a folder that belongs to someone else
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        monkeypatch.setenv("RUNTIME_DIRECTORY", str(theirs))
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            Settings().endpoint("control")


def test_the_users_file_comes_before_the_machines(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Precedence: --config, then ~/.config/vggvox/vggvoxd.yaml, then /etc, then defaults."""
    etc = tmp_path / "etc.yaml"
    etc.write_text("status: {interval_s: 7.0}\n")
    user = tmp_path / "home" / "vggvox" / "vggvoxd.yaml"
    monkeypatch.setattr(config, "SYSTEM_CONFIG", etc)
    monkeypatch.setattr(config, "user_config_dir", lambda app: str(tmp_path / "home" / app))
    assert config.find_config(None) == etc, "the machine's file when the user has none"
    user.parent.mkdir(parents=True)
    user.write_text("status: {interval_s: 3.0}\n")
    assert config.find_config(None) == user
    assert config.load(None)[0].status.interval_s == 3.0
    explicit = tmp_path / "mine.yaml"
    explicit.write_text("status: {interval_s: 1.0}\n")
    assert config.load(explicit)[0].status.interval_s == 1.0


def test_sources_at_the_limit_and_past_it() -> None:
    from vggvoxd.sourceconfig import MAX_SOURCES

    many = [{"name": f"room{i}", "device": i} for i in range(MAX_SOURCES)]
    assert len(config.parse({"sources": many}).sources) == MAX_SOURCES
    with pytest.raises(ConfigError, match=f"'sources' has {MAX_SOURCES + 1} entries; at most"):
        config.parse({"sources": [*many, {"name": "one-more"}]})
