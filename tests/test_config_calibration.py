"""The config keys that name a calibration: ``scoring.calibration`` and
``sources[].calibration``, checked before the daemon loads its model (one line
naming the key and the file; not by the parser, which the clients run too), and
which one a stream's rule uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vggvox.calibration import Calibration
from vggvox.modelcard import load_card, resolve_card
from vggvox.stream.recognizer import ScoringConfig
from vggvoxd import config
from vggvoxd.calibration_overrides import Calibrations, check, describe
from vggvoxd.config import ConfigError

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "vggvox_weights"


@pytest.fixture
def own(tmp_path: Path) -> Path:
    """A calibration of the default model (campplus-int8), as if the user's own."""
    path = tmp_path / "room.calibration.yaml"
    shutil.copyfile(WEIGHTS / "campplus-int8.calibration.yaml", path)
    return path


def checked(data: dict[str, object]) -> config.Settings:
    """Parsed, then checked as vggvoxd's preflight does."""
    settings = config.parse(data, "x.yaml")
    check(settings, "x.yaml")
    return settings


def source(name: str, cal: Path | None = None) -> dict[str, object]:
    entry: dict[str, object] = {"name": name, "device": name}  # a microphone, by name
    return {**entry, "calibration": str(cal)} if cal else entry


def test_both_keys_are_accepted_and_kept_as_given(own: Path) -> None:
    settings = config.parse({"scoring": {"calibration": str(own)},
                             "sources": [source("a", own), source("b")]}, "x.yaml")
    assert settings.scoring.calibration == str(own)
    assert [s.calibration for s in settings.sources] == [str(own), None]
    assert config.Settings().scoring.calibration is None


@pytest.mark.parametrize("where", ["scoring", "source"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found, or not a file"),
        ("- just\n- a list\n", "not a calibration"),
        ("model: campplus-int8\n", "not a calibration"),
        ("a: [unclosed\n", "cannot read calibration"),
        ("dir", "not found, or not a file"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key_and_the_file(
        tmp_path: Path, where: str, content: str | None, message: str) -> None:
    path = tmp_path / "bad.yaml"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    data: dict[str, object] = (
        {"scoring": {"calibration": str(path)}} if where == "scoring"
        else {"sources": [source("a"), {"name": "b", "device": 1, "calibration": str(path)}]})
    key = "'scoring.calibration'" if where == "scoring" else r"'sources\[1\].calibration'"
    with pytest.raises(ConfigError, match=f"^x.yaml: {key} .*bad.yaml.*{message}") as err:
        checked(data)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_an_unreadable_file_is_refused(own: Path) -> None:
    own.chmod(0)
    try:
        with pytest.raises(ConfigError, match="'scoring.calibration' .*cannot read"):
            checked({"scoring": {"calibration": str(own)}})
    finally:
        own.chmod(0o644)


def test_another_models_calibration_is_refused_naming_both(tmp_path: Path) -> None:
    ge2e = tmp_path / "ge2e.calibration.yaml"
    shutil.copyfile(WEIGHTS / "ge2e.calibration.yaml", ge2e)
    with pytest.raises(ConfigError, match="'scoring.calibration' .*ge2e.calibration.yaml: a "
                       "calibration of 'ge2e-resemblyzer', not of the model.name's "
                       "'campplus-int8'"):
        checked({"scoring": {"calibration": str(ge2e)}})
    with pytest.raises(ConfigError, match=r"'sources\[0\].calibration' .*ge2e-resemblyzer"):
        checked({"sources": [source("a", ge2e)]})
    # With the model it was fitted for, the same file is fine.
    settings = checked({"model": {"name": "ge2e"}, "scoring": {"calibration": str(ge2e)}})
    assert settings.scoring.calibration == str(ge2e)


def test_the_parser_reads_no_calibration_file(tmp_path: Path) -> None:
    """The clients parse the daemon's config for its endpoints: a calibration file they
    may not read (root's, 0600), or one gone, is none of their business."""
    data = {"scoring": {"calibration": str(tmp_path / "gone.yaml")},
            "sources": [source("a", tmp_path / "gone-too.yaml")]}
    assert config.parse(data, "x.yaml").scoring.calibration == str(tmp_path / "gone.yaml")
    with pytest.raises(ConfigError, match="'scoring.calibration' .*not found"):
        check(config.parse(data, "x.yaml"), "x.yaml")


def test_a_path_must_be_text(own: Path) -> None:
    with pytest.raises(ConfigError, match="'scoring.calibration' must be"):
        config.parse({"scoring": {"calibration": 5}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"'sources\[0\].calibration' must be"):
        config.parse({"sources": [{"name": "a", "device": 1, "calibration": ["x"]}]}, "x.yaml")


def test_a_source_uses_its_own_else_the_daemons_else_the_cards(own: Path,
                                                               tmp_path: Path) -> None:
    other = tmp_path / "office.calibration.yaml"
    shutil.copyfile(own, other)
    settings = config.parse({"scoring": {"calibration": str(own)},
                             "sources": [source("a", other), source("b")]}, "x.yaml")
    cals = Calibrations.load(settings, "campplus-int8")
    a, b = cals.for_source("a"), cals.for_source("b")
    assert a is not None and a.path == other
    assert b is not None and b.path == own
    assert cals.for_source("replay:x-123") is cals.default  # a replay: the daemon's
    card = load_card(resolve_card("campplus-int8"), verify=False)
    scoring = settings.scoring
    assert scoring.rule(card, calibration=a).calibration is a
    assert scoring.rule(card).calibration is card.calibration  # none named: the card's
    assert settings.recognizer(a).calibration is a
    assert f"(calibration {other})" in describe(scoring.rule(card, calibration=a),
                                                card.calibration)
    assert "(calibration" not in describe(scoring.rule(card), card.calibration)
    assert Calibrations.load(config.Settings(), "campplus-int8").for_source("a") is None


def test_a_card_without_a_calibration_gets_one(own: Path) -> None:
    card = load_card(resolve_card("campplus-int8"), verify=False, calibration=False)
    assert card.calibration is None and not ScoringConfig().rule(card).calibrated
    rule = ScoringConfig().rule(card, calibration=Calibration.load(own))
    assert rule.calibrated and "calibrated to accept 0.5% of strangers" in rule.describe()
