"""The long texts of ``--help``: file formats and each command's examples.

They live here, not beside the ``add_argument`` calls, so that the parsers stay
short to read and the texts can be read (and kept true) in one place.
``tests/test_help.py`` checks that every command has examples and every
argument a help text.
"""

from __future__ import annotations

import argparse

LIST_FORMAT = """\
list files (--enroll-list, --test-list):
  One utterance a line, 'filename speaker', separated by spaces or tabs:
      id10001/1zcIwhmdeo4/00001.wav id10001
      clips/bob_03.flac bob
  or VGGVoxRealTime's CSV form, whose first line is the header 'filename,speaker':
      filename,speaker
      clips/alice_01.wav,alice
  Blank lines are ignored. Paths are relative to the list's folder, or to --root.
  A malformed line or an unusable file is reported as 'LIST:LINE: FILE: reason'
  and skipped; the run goes on with the rest."""

TRIALS_FORMAT = """\
trial files (--trials), as VoxCeleb's veri_test.txt:
  One trial a line, 'label enroll test', separated by spaces or tabs; label 1
  means the same speaker, 0 different speakers:
      1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
      0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav
  Paths are relative to the trial file's folder, or to --root."""

REPLAY_TARGET = """\
TARGET is an audio file (.wav, .flac, .ogg, .oga, .aiff, .aif), or a text list of
files: the first field of each line is a path relative to the list's folder, so a
'filename speaker' list (either form above) works as it is."""

_E = "examples:\n"

EXAMPLES: dict[str, str] = {
    "": _E + """\
  vggvox-client enroll alice a.wav b.wav     # through the running daemon
  vggvox-client listen                       # who is speaking, as it happens
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv --out r.csv
  vggvox-client verify --trials veri_test.txt --det det.png

global options (--control, --events, --timeout, --log-level, --server-key, --key)
go before or after the command. Exit status: 0 done, 1 nothing could be scored,
2 bad arguments or a refused request, 130 interrupted.""",
    "enroll": _E + """\
  vggvox-client enroll alice a.wav b.flac      # a new speaker, from files
  vggvox-client enroll alice c.wav             # alice exists: c.wav is appended
  vggvox-client enroll alice --live 10         # 10 s from the daemon's microphone
  vggvox-client enroll bob new.wav --replace   # bob's voiceprint from new.wav alone""",
    "speakers": _E + """\
  vggvox-client speakers
  vggvox-client speakers --json | jq '.speakers[].name'""",
    "remove": _E + """\
  vggvox-client remove alice""",
    "name": _E + """\
  vggvox-client name unknown-2 bob
  vggvox-client name unknown-1 carol --source mic""",
    "status": _E + """\
  vggvox-client status
  vggvox-client status --json""",
    "listen": _E + """\
  vggvox-client listen
  vggvox-client listen --topic turn --json
  vggvox-client listen --topic speech.start --topic speech.end --seconds 60""",
    "replay": REPLAY_TARGET + "\n\n" + _E + """\
  vggvox-client replay meeting.wav
  vggvox-client replay meeting.wav --realtime --json
  vggvox-client replay test_list.csv""",
    "keygen": _E + """\
  vggvox-client keygen /etc/vggvox/keys vggvoxd   # the daemon's pair
  vggvox-client keygen ~/.vggvox alice            # a client's pair""",
    "offline": LIST_FORMAT + "\n\n" + _E + """\
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv --out r.csv
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv \\
      --out r.csv --open-set --false-accept 0.01 --det openset.png --json""",
    "batch-offline": LIST_FORMAT + "\n\n" + _E + """\
  vggvox-client batch-offline --enroll-list enroll_list.csv --test-list test_list.csv \\
      --out r.csv --workers 2""",
    "verify": TRIALS_FORMAT + "\n\n" + _E + """\
  vggvox-client verify --trials veri_test.txt --root wav/
  vggvox-client verify --trials veri_test.txt --det det.png --scores scores.txt --json""",
    "similarity": _E + """\
  vggvox-client similarity a.wav b.wav c.flac
  vggvox-client similarity *.wav --png matrix.png --model ge2e""",
    "evaluate": _E + """\
  vggvox-client evaluate conv0.wav --rttm conv0.rttm --enroll-list conv0_enroll.txt
  vggvox-client evaluate meeting.wav --rttm meeting.rttm --png timeline.png --json""",
    "conversations": _E + """\
  vggvox-client conversations --material test_list.csv --enroll-list enroll_list.csv \\
      --out convs --count 3""",
}


class Formatter(argparse.HelpFormatter):
    """Texts of several lines (the examples, the formats) are laid out as written;
    a one-line text (a description) is wrapped to the terminal as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def attach(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction) -> None:
    """Give the program and each of its commands their examples (and formats) as an
    epilog."""
    for name, p in [("", parser), *sub.choices.items()]:
        p.epilog = EXAMPLES[name.replace("batch_offline", "batch-offline")]
        p.formatter_class = Formatter
