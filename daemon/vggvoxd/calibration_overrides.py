"""Calibrations the config names instead of the model card's.

``scoring.calibration`` (every source) and ``sources[].calibration`` (that source
alone) name files that ``vggvox-client calibrate`` writes, fitted on the user's
own recordings. Each is checked before the model loads (readable, a
calibration, of the configured model: ``check``, from vggvoxd's preflight) so
that a wrong path stops start-up in one line naming the key and the file, and
loaded again with the model the daemon really runs when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vggvox.calibration import AcceptRule, Calibration
from vggvox.errors import ConfigError, ModelError
from vggvox.modelcard import load_card, resolve_card

if TYPE_CHECKING:
    from vggvoxd.config import Settings


def load_one(text: str, key: str, model: str | None, where: str) -> Calibration:
    """The calibration file ``text`` names (``~`` expanded; relative to the working
    folder, as ``store.path``), fitted for ``model`` (None: not checked)."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{where}: '{key}' {text}: not found, or not a file (give a "
                          "calibration from vggvox-client calibrate)")
    try:
        cal = Calibration.load(path)
    except ModelError as e:
        raise ConfigError(f"{where}: '{key}' {' '.join(str(e).split())}") from None
    if model is not None and cal.model != model:
        raise ConfigError(f"{where}: '{key}' {text}: a calibration of {cal.model!r}, not of "
                          f"the model.name's {model!r}: calibrate again with this model")
    return cal


def named(settings: Settings) -> list[tuple[str, str, str | None]]:
    """(key, path, source name; None for the daemon's own) of every calibration the
    config names."""
    own = settings.scoring.calibration
    return ([("scoring.calibration", own, None)] if own else []) + [
        (f"sources[{i}].calibration", s.calibration, s.name)
        for i, s in enumerate(settings.sources) if s.calibration]


def check(settings: Settings, where: str) -> None:
    """Before the model loads (vggvoxd's preflight, not the config parser, which the
    clients run too: they need not read the daemon's files): every named calibration
    is readable and a calibration, and of the configured model when its card can be
    read (a card that cannot is the model's error, reported as such when the daemon
    loads it)."""
    files = named(settings)
    if not files:
        return
    try:
        model: str | None = load_card(resolve_card(settings.model.name), verify=False,
                                      calibration=False).name
    except ModelError:
        model = None
    for key, text, _ in files:
        load_one(text, key, model, where)


@dataclass(frozen=True)
class Calibrations:
    """The daemon's calibrations: its own (``scoring.calibration``; None: the card's)
    and each source's that names one."""

    default: Calibration | None = None
    by_source: dict[str, Calibration] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings, model: str, where: str = "config") -> Calibrations:
        default, by_source = None, {}
        for key, text, source in named(settings):
            cal = load_one(text, key, model, where)
            if source is None:
                default = cal
            else:
                by_source[source] = cal
        return cls(default, by_source)

    def for_source(self, name: str | None) -> Calibration | None:
        """A source's own, else the daemon's (None: the card's)."""
        return self.by_source.get(name or "", self.default)


def describe(rule: AcceptRule, card_calibration: Calibration | None) -> str:
    """The rule in words, naming the calibration file when it is not the card's."""
    cal = rule.calibration
    if rule.calibrated and cal is not None and cal is not card_calibration:
        return f"{rule.describe()} (calibration {cal.path})"
    return rule.describe()
