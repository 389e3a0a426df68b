"""The source schemes' registry (vggvoxd.source_schemes): what the command line and the
config accept, what each opens, and a new scheme added to the table alone, which the
config, the command line's check and help and the daemon's sources then take, with no
other module changed. Fast: no daemon, no model, no device."""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import write_wav
from vggvox.errors import ConfigError
from vggvoxd import config, source_schemes
from vggvoxd.livesources import check_specs, specs
from vggvoxd.main import build_parser
from vggvoxd.source_schemes import SCHEMES, Scheme, check_source, make_source, source_help
from vggvoxd.sourceconfig import SourceSpec
from vggvoxd.sources import FileSource, MicSource, Sink, StdinSource, ThreadSource

NETWORK = ["rtsp://HOST/PATH", "rtp://HOST:PORT", "sdp:PATH", "udp://HOST:PORT",
           "http://HOST/PATH", "https://HOST/PATH"]
"""The network streams' forms (vggvoxd.netsource: test_netsource.py)."""
LISTED = "file:PATH, " + ", ".join(NETWORK[:-1]) + " or " + NETWORK[-1]
LISTED_URI = ", ".join(NETWORK[:-1]) + " or " + NETWORK[-1]


def test_the_forms_each_place_shows() -> None:
    assert [s.form for s in SCHEMES] == ["mic", "file:PATH", "stdin", "stdin:live",
                                         *NETWORK]
    assert source_schemes.source_forms() == f"mic, stdin, stdin:live, {LISTED}"
    assert source_schemes.uri_forms() == f"file:PATH, stdin, stdin:live, {LISTED_URI}"
    text = " ".join(build_parser().format_help().split())
    assert " ".join(source_help().split()) in text
    assert source_help().startswith("mic (default); file:PATH, an audio file")


@pytest.fixture
def real_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stdin with a file descriptor, which a StdinSource takes when made (pytest's has none)."""
    with open(os.devnull, "rb") as null:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(null))
        yield


@pytest.mark.usefixtures("real_stdin")
def test_what_a_source_opens(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", np.full(1600, 3000, dtype=np.int16))
    settings = config.parse({"audio": {"device": "USB"}})
    opened = {}
    for text in ("mic", f"file:{wav}", "stdin", "stdin:live"):
        (spec,) = specs(settings, text)
        source = make_source(spec, 20)
        opened[text] = (spec.name, type(source), source.lossless)
    assert opened == {"mic": ("mic", MicSource, False),
                      f"file:{wav}": (f"file:{wav}", FileSource, False),
                      "stdin": ("stdin", StdinSource, True),
                      "stdin:live": ("stdin", StdinSource, False)}
    (mic,) = specs(settings, "mic")
    assert mic.device == "USB" and isinstance(make_source(mic, 20), MicSource)


def test_a_bad_source_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"^--source must be mic, stdin, stdin:live, "
                                         rf"{re.escape(LISTED)}, got 'file:'$"):
        check_source("file:")
    with pytest.raises(ValueError, match=r"^--source file:/no/such\.wav: file not found$"):
        check_source("file:/no/such.wav")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(ValueError, match=rf"^source 'hall' file:{text}: not readable as audio"):
        check_specs(config.parse({"sources": [{"name": "hall", "uri": f"file:{text}"}]}), "mic")


def test_the_config_takes_the_uris_of_the_table() -> None:
    with pytest.raises(ConfigError, match=r"'sources\[0\].uri' must be file:PATH, stdin, "
                                          rf"stdin:live, {re.escape(LISTED_URI)}, got 'mic'"):
        config.parse({"sources": [{"name": "a", "uri": "mic"}]})
    with pytest.raises(ConfigError, match=r"'sources' has more than one 'uri: stdin' \(one "
                                          r"standard input to read\)"):
        config.parse({"sources": [{"name": "a", "uri": "stdin:live"},
                                  {"name": "b", "uri": "stdin"}]})


class ToneSource(ThreadSource):
    """A made-up source: a sine tone, as fast as it is taken, until ``seconds`` have gone."""

    def __init__(self, hz: float, name: str, block_ms: int) -> None:
        super().__init__(name)
        self.hz, self.block = hz, 16 * block_ms

    def _run(self, sink: Sink) -> None:
        t = np.arange(16000) / 16000
        tone = (8000 * np.sin(2 * np.pi * self.hz * t)).astype(np.int16)
        for pos in range(0, len(tone), self.block):
            sink(tone[pos:pos + self.block])
        self.finished = True


def _hz(arg: str) -> None:
    if not arg.isdigit() or not 20 <= int(arg) <= 8000:
        raise ValueError("HZ must be a whole number from 20 to 8000")


TONE = Scheme("tone", "a sine tone of HZ hertz, one second of it", arg="HZ", check=_hz,
              open=lambda arg, spec, ms: ToneSource(float(arg), spec.name, ms))


def test_a_new_scheme_is_one_entry_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_schemes, "SCHEMES", (*SCHEMES, TONE))
    assert "; or tone:HZ, a sine tone of HZ hertz" in source_help()
    assert source_schemes.source_forms() == ("mic, stdin, stdin:live, file:PATH, "
                                             f"{', '.join(NETWORK)} or tone:HZ")
    check_source("tone:440")
    with pytest.raises(ValueError, match="^--source tone:9: HZ must be a whole number"):
        check_source("tone:9")
    settings = config.parse({"sources": [{"name": "lab", "uri": "tone:440"},
                                         {"name": "desk", "device": 1}]})
    check_specs(settings, "mic")
    with pytest.raises(ValueError, match="^source 'lab' tone:1: HZ must be"):
        check_specs(config.parse({"sources": [{"name": "lab", "uri": "tone:1"}]}), "mic")
    lab, desk = (make_source(spec, 20) for spec in specs(settings, "mic"))
    assert isinstance(desk, MicSource) and isinstance(lab, ToneSource) and lab.name == "lab"
    got: list[np.ndarray] = []
    done = threading.Event()
    lab.start(lambda block: (got.append(block), len(got) == 50 and done.set()))
    assert done.wait(5.0)
    lab.stop()
    assert lab.finished and sum(map(len, got)) == 16000
    (one,) = specs(config.parse({}), "tone:440")
    assert one == SourceSpec("tone:440", uri="tone:440")


def test_each_scheme_is_written_one_way() -> None:
    """No two schemes take the same text, and what each takes is its form."""
    for s in SCHEMES:
        sample = s.form.replace(s.arg, "x") if s.arg else s.form
        assert [t.name for t in SCHEMES if t.matches(sample)] == [s.name]
