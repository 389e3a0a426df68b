"""Daemon configuration: the shipped file, defaults, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vggvox.protocol import endpoints
from vggvoxd import config
from vggvoxd.config import ConfigError, Settings

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "vggvoxd.yaml"


def test_shipped_file_documents_every_key_with_its_default() -> None:
    """Every key once (the loader refuses a key given twice), each at its default."""
    data = yaml.safe_load(SHIPPED.read_text())
    settings, found = config.load(SHIPPED)
    assert found == SHIPPED and settings == Settings()
    assert config.parse(data, str(SHIPPED)) == Settings()
    assert data["sources"] == []
    for section in config.dataclasses.fields(Settings):
        if section.name in ("sources", "node"):
            continue  # a list of entries, and a name: not sections of keys
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
        ({"sources": [{"name": "a", "uri": "rtmp://x"}]},
         "must be file:PATH, stdin, stdin:live, rtsp://HOST/PATH, "),
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
    monkeypatch.setattr(endpoints, "SYSTEM_CONFIG", etc)
    monkeypatch.setattr(endpoints, "user_config_dir", lambda app: str(tmp_path / "home" / app))
    assert endpoints.find_config(None) == etc, "the machine's file when the user has none"
    user.parent.mkdir(parents=True)
    user.write_text("status: {interval_s: 3.0}\n")
    assert endpoints.find_config(None) == user
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


@pytest.mark.parametrize(("text", "line", "key", "first"), [
    ("metrics:\n  listen: null\nlogging: {level: INFO}\nmetrics:\n  public: false\n",
     4, "metrics", 1),
    ("metrics:\n  listen: 127.0.0.1:9464\n  public: false\n  listen: null\n",
     4, "metrics.listen", 2),
    ("sources:\n  - {name: a, uri: stdin}\n  - name: b\n    device: 1\n    name: c\n",
     5, "sources[1].name", 3),
])
def test_a_key_given_twice_is_one_line_naming_file_key_and_line(
        tmp_path: Path, text: str, line: int, key: str, first: int) -> None:
    """PyYAML keeps the last of two equal keys, so an edit to the first was silently
    ignored (issue 20: the template had sources, search and metrics twice)."""
    f = tmp_path / "twice.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(f)
    assert str(e.value) == (f"{f}: line {line}: duplicate key '{key}' (first at line "
                            f"{first}): give each key once")


def test_the_daemon_refuses_a_key_given_twice_in_one_line(tmp_path: Path) -> None:
    f = tmp_path / "vggvoxd.yaml"
    f.write_text(SHIPPED.read_text() + "\nmetrics:\n  listen: 127.0.0.1:9464\n")
    run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--config", str(f),
                          "--source", "stdin", "--store", str(tmp_path / "v.db"),
                          "--control", f"ipc://{tmp_path}/c.sock",
                          "--events", f"ipc://{tmp_path}/e.sock"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and not run.stdout, run.stdout
    line = SHIPPED.read_text().count("\n") + 2
    first = 1 + SHIPPED.read_text().splitlines().index(next(
        ln for ln in SHIPPED.read_text().splitlines() if ln.startswith("metrics:")))
    assert run.stderr == (f"vggvoxd: {f}: line {line}: duplicate key 'metrics' (first at line "
                          f"{first}): give each key once\n")


def test_invalid_yaml_is_one_line() -> None:
    from vggvox.settingsfile import load_yaml

    with pytest.raises(ConfigError) as e:
        load_yaml("vad: [unclosed\n", "x.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("x.yaml: not valid YAML at line")


def test_source_names_that_clean_to_one_topic_are_refused() -> None:
    """The MQTT bridge derives topics and entity ids from vggvox.slug: Hall.1 and hall-1
    would share them (and one ending would delete the other's entities)."""
    from vggvox.slug import slug

    with pytest.raises(ConfigError) as e:
        config.parse({"sources": [{"name": "kitchen", "device": 0},
                                  {"name": "Hall.1", "device": 1},
                                  {"name": "hall-1", "device": 2}]}, "v.yaml")
    assert str(e.value) == ("v.yaml: 'sources[2].name' 'hall-1' and 'sources[1].name' "
                            "'Hall.1' both clean to 'hall_1': they would share topics and "
                            "entity ids; rename one")
    names = ["Hall.1", "hall_2", "hall-1x", "hall1"]  # distinct slugs: all accepted
    assert len({slug(n) for n in names}) == len(names)
    assert len(config.parse({"sources": [{"name": n, "device": i}
                                         for i, n in enumerate(names)]}).sources) == 4


def bomb(levels: int = 9, merge: bool = False) -> str:
    """A billion laughs: each level an alias of the last, nine times; 9^levels values
    in a few hundred bytes. With ``merge``, mappings merged (``<<``) instead of lists."""
    if merge:
        text = "l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(9)) + "}\n"
        for n in range(1, levels):
            text += f"l{n}: &l{n} {{<<: [{', '.join([f'*l{n - 1}'] * 9)}]}}\n"
        return text
    text = "l0: &l0 [" + ", ".join(["lol"] * 9) + "]\n"
    for n in range(1, levels):
        text += f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n"
    return text


@pytest.mark.parametrize(("text", "message"), [
    ("a: &x [*x]\n", "line 1: 'a' contains itself (an alias of it at 'a[0]')"),
    ("vad: &v {aggressiveness: *v}\n",
     "line 1: 'vad' contains itself (an alias of it at 'vad.aggressiveness')"),
    (bomb(), "line 6: 'l5' expands to more than 100,000 values through its aliases: not a "
             "configuration"),
    (bomb(merge=True), "line 5: 'l4' expands to more than 100,000 values through its "
                       "aliases: not a configuration"),
    ("vad: " + "[" * 5000 + "]" * 5000 + "\n",
     "not a configuration: lists or mappings nested too deeply"),
], ids=["list-in-itself", "mapping-in-itself", "billion-laughs", "merge-bomb", "deep"])
def test_an_alias_of_itself_or_an_alias_bomb_is_one_line_at_once(
        tmp_path: Path, text: str, message: str) -> None:
    """The duplicate-key check walked aliases without a visited set: `a: &x [*x]` gave
    a RecursionError traceback, and an alias bomb would have been walked 9^9 times (a
    merge bomb costs PyYAML itself gigabytes). Each node is walked once now."""
    f = tmp_path / "v.yaml"
    f.write_text(text)
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        config.load(f)
    took = time.monotonic() - t0
    assert str(e.value) == f"{f}: {message}"
    assert took < 5.0, f"{took:.1f} s"  # ms for the aliases; ~1 s for PyYAML's deep nesting


def test_aliases_and_merges_a_config_may_use_are_accepted() -> None:
    from vggvox.settingsfile import load_yaml

    text = ("sources:\n  - &room {name: kitchen, uri: 'file:/srv/a.wav'}\n"
            "  - {<<: *room, name: hall}\n  - {name: office, device: &dev 2}\n"
            "  - {name: attic, device: *dev}\n")
    settings = config.parse(load_yaml(text, "v.yaml"), "v.yaml")
    assert [(s.name, s.uri, s.device) for s in settings.sources] == [
        ("kitchen", "file:/srv/a.wav", None), ("hall", "file:/srv/a.wav", None),
        ("office", None, 2), ("attic", None, 2)]


def test_the_daemon_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    for name, text in (("bomb.yaml", bomb()), ("loop.yaml", "a: &x [*x]\n")):
        f = tmp_path / name
        f.write_text(text)
        run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--config", str(f),
                              "--source", "stdin"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and not run.stdout, (run.stdout, run.stderr)
        assert run.stderr.startswith(f"vggvoxd: {f}: line ") and run.stderr.count("\n") == 1
