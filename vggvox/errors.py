"""Domain exceptions. Each carries enough context to name the file or key at fault."""

from __future__ import annotations


class VggvoxError(Exception):
    """Base class for every error this package raises on purpose."""


class AudioError(VggvoxError):
    """An audio file could not be used: missing, not audio, truncated, silent, too short."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class InputTooShortError(VggvoxError):
    """Audio shorter than the model's minimum input length."""

    def __init__(self, seconds: float, minimum: float, model: str) -> None:
        super().__init__(
            f"input is {seconds:.3f} s, shorter than the {minimum:.2f} s that model {model} needs"
        )
        self.seconds = seconds
        self.minimum = minimum


class ModelError(VggvoxError):
    """A model file or card is missing, altered or malformed."""


class ModelMismatchError(VggvoxError):
    """Voiceprints made by one model scored with another."""


class ListFormatError(VggvoxError):
    """A malformed line in an enrollment, test or trial list."""

    def __init__(self, path: str, line_no: int, line: str, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}: {line!r}")
        self.path = path
        self.line_no = line_no
        self.text = line
        self.reason = reason


class StoreError(VggvoxError):
    """The voiceprint store refused an operation."""


class ConfusableNameError(StoreError):
    """A new speaker's name looks like an enrolled speaker's (UTS #39 confusables)."""


class VoiceMismatchError(VggvoxError):
    """Enrollment clips that are not the voice enrolled under that name, or not one voice."""


class ConfigError(VggvoxError):
    """A configuration file or value that the daemon cannot start with (or a client
    cannot find the daemon with): the text names the file or key."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached (PostgreSQL down, refused, timed out). One
    line, ``store postgresql://host:port/db unreachable: <reason>``; the operation's
    transaction was rolled back, so nothing was half-written."""
