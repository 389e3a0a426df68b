"""Source schemes: what a ``--source`` or a ``sources:`` entry may name, in one table.

    mic          the microphone: ``audio.device`` (a ``sources:`` entry's ``device``)
    file:PATH    an audio file played at real-time pace, as a microphone would deliver it
    stdin        raw 16 kHz mono s16le PCM from standard input, lossless
    stdin:live   the same, read as it comes, dropping the oldest when behind
    rtsp://, rtp://, sdp:PATH, udp://, http://, https://
                 a network audio stream (``vggvoxd.netsource``), reconnected by itself

A ``Scheme`` declares all the daemon knows of one: how it is written, what it
checks before anything loads, how it opens (an ``AudioSource``: ``vggvoxd.sources``,
whose ``lossless`` says whether it waits for the pipeline or drops what it cannot keep
up with), and what only one source may read. The command line
(``vggvoxd.main``: the check, the help), the config's ``sources:`` list
(``vggvoxd.sourceconfig``) and the supervisor (``vggvoxd.livesources``) ask this
table and nothing else: a new scheme is one entry here, with its source's class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf

from vggvoxd import neturl
from vggvoxd.netsource import NetSource
from vggvoxd.sources import AudioSource, FileSource, MicSource, StdinSource

if TYPE_CHECKING:
    from vggvoxd.sourceconfig import SourceSpec


def _anything(arg: str) -> None:
    """The check of a scheme that names nothing to check."""


def _audio_file(arg: str) -> None:
    path = Path(arg)
    if not path.is_file():
        raise ValueError("file not found")
    try:
        sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"not readable as audio: {e}") from None


@dataclass(frozen=True)
class Scheme:
    """One kind of source, as ``--source`` and ``sources:`` name it."""

    name: str
    """How it is written: ``stdin``; with an ``arg``, ``name:ARG`` (``file:PATH``)."""
    help: str
    """What it is, in ``vggvoxd --help`` (``--source``)."""
    open: Callable[[str, SourceSpec, int], AudioSource]
    """A source from the argument, the spec (its name, device) and the block in ms;
    nothing is opened yet (``AudioSource.start`` does that, and may be retried)."""
    arg: str = ""
    """What follows ``name:``, as help and errors show it (``PATH``); empty: nothing."""
    check: Callable[[str], None] = _anything
    """The argument's check before anything loads: a ValueError saying what is wrong."""
    device: bool = False
    """A capture device, named by a ``sources:`` entry's ``device`` (or ``audio.device``),
    never by a ``uri``."""
    only_one: str = ""
    """What only one source may read (``one standard input to read``): a second entry of
    the schemes that say the same is refused."""
    one_name: str = ""
    """The name the one source of a ``--source`` gets in events; empty: what was written."""
    shown: Callable[[str], str] = lambda text: text
    """What was written as a name, a log line or an error shows it (a URL's password
    hidden)."""

    @property
    def form(self) -> str:
        return f"{self.name}:{self.arg}" if self.arg else self.name

    def matches(self, text: str) -> bool:
        if not self.arg:
            return text == self.name
        return text.startswith(self.name + ":") and len(text) > len(self.name) + 1

    def argument(self, text: str) -> str:
        return text[len(self.name) + 1:] if self.arg else ""


def _network(name: str, arg: str, what: str) -> Scheme:
    """A network stream's scheme: its URL is the whole text (``rtsp://...``)."""

    def check(rest: str) -> None:
        neturl.check(f"{name}:{rest}")

    def open_stream(rest: str, spec: SourceSpec, block_ms: int) -> AudioSource:
        return NetSource(f"{name}:{rest}", spec.name, dict(spec.options))

    return Scheme(name, what, arg=arg, check=check, open=open_stream, shown=neturl.shown)


SCHEMES: tuple[Scheme, ...] = (
    Scheme("mic", "", device=True,
           open=lambda arg, spec, ms: MicSource(spec.device, ms, name=spec.name)),
    Scheme("file", "an audio file played at real-time pace as a microphone would deliver it",
           arg="PATH", check=_audio_file,
           open=lambda arg, spec, ms: FileSource(Path(arg), block_ms=ms, name=spec.name)),
    Scheme("stdin", "raw 16 kHz mono signed 16-bit little-endian PCM, read no faster than "
           "the daemon decides it (lossless: the pipe holds its writer back; pauses are "
           "fine), for a file or a program's output",
           only_one="one standard input to read",
           open=lambda arg, spec, ms: StdinSource(block_ms=ms, name=spec.name)),
    Scheme("stdin:live", "the same read as it comes, dropping the oldest audio when behind "
           "(logged), for a live capture (arecord), which would otherwise fall ever "
           "further behind", only_one="one standard input to read", one_name="stdin",
           open=lambda arg, spec, ms: StdinSource(block_ms=ms, name=spec.name, live=True)),
    *(_network(name, arg, what) for name, arg, what in (
          ("rtsp", "//HOST/PATH", "an RTSP stream's audio (an IP camera), pulled over TCP"),
          ("rtp", "//HOST:PORT", "RTP arriving on a local UDP port, of a static payload "
                                 "type (G.711); any other codec needs an sdp:PATH"),
          ("sdp", "PATH", "RTP described by a session description file (any codec)"),
          ("udp", "//HOST:PORT", "a UDP stream (MPEG-TS) arriving on a local port"),
          ("http", "//HOST/PATH", "an audio stream served over HTTP (Icecast, HLS)"),
          ("https", "//HOST/PATH", "the same over HTTPS"))),
)
"""Every scheme; the first is ``--source``'s default. The order is the help's."""

DEFAULT = SCHEMES[0].name
"""``--source``'s default (and ``Daemon``'s): the table's first scheme."""

HELP_END = ("A file or stdin ends the daemon, status 0, once its input has ended and its "
           "last window is decided; a network stream that ends is reconnected. Given, it "
           "replaces the config's list of sources (a list never ends)")
"""What the help says after the schemes: which end by themselves, and what then."""


def _listed(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def source_forms() -> str:
    """What ``--source`` may be: the names as typed, then the forms with a part to fill."""
    return _listed([s.form for s in sorted(SCHEMES, key=lambda s: bool(s.arg))])


def uri_forms() -> str:
    """What a ``sources:`` entry's ``uri`` may be."""
    return _listed([s.form for s in SCHEMES if not s.device])


def source_help() -> str:
    """``--source``'s help: each scheme, the default first."""
    parts = [f"{SCHEMES[0].form} (default)", *(f"{s.form}, {s.help}" for s in SCHEMES[1:])]
    return "; ".join(parts[:-1]) + "; or " + parts[-1] + ". " + HELP_END


def find(text: str) -> Scheme:
    """The scheme of a ``--source``: a ValueError naming the forms if none."""
    found = next((s for s in SCHEMES if s.matches(text)), None)
    if found is None:
        raise ValueError(f"--source must be {source_forms()}, got {neturl.shown(text)!r}")
    return found


def find_uri(uri: str) -> Scheme | None:
    """The scheme of a ``sources:`` entry's ``uri``; None if it names none."""
    return next((s for s in SCHEMES if not s.device and s.matches(uri)), None)


def scheme_of(spec: SourceSpec) -> Scheme:
    """The scheme of a source to run: its uri's, or the device scheme's (no uri)."""
    if spec.uri is None:
        return next(s for s in SCHEMES if s.device)
    return find(spec.uri)


def check_source(text: str, where: str = "--source") -> None:
    """A one-line ValueError for a bad ``--source`` (or a source's uri: ``where`` names
    the source), before anything loads: a form no scheme has, or what it names unusable."""
    scheme = find(text)
    try:
        scheme.check(scheme.argument(text))
    except ValueError as e:
        raise ValueError(f"{where} {scheme.shown(text)}: {e}") from None


def shared_input(uris: list[str]) -> str | None:
    """Why these uris cannot all be read (two read what only one may): None if they can."""
    taken = [s.only_one for s in map(find_uri, uris) if s is not None and s.only_one]
    twice = next((what for what in taken if taken.count(what) > 1), None)
    if twice is None:
        return None
    first = next(s for s in SCHEMES if s.only_one == twice)
    return f"more than one 'uri: {first.name}' ({twice})"


def make_source(spec: SourceSpec, block_ms: int) -> AudioSource:
    """The (not yet started) source of a spec, by its scheme."""
    scheme = scheme_of(spec)
    return scheme.open(scheme.argument(spec.uri or ""), spec, block_ms)
