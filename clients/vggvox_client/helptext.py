"""The long texts of ``--help``: file formats and each command's examples.

They live here, not beside the ``add_argument`` calls, so that the parsers stay
short to read and the texts can be read (and kept true) in one place: the
formats say what ``vggvox.eval.lists`` and ``replay.targets`` really accept.
``tests/test_help.py`` checks that every command has examples that parse, every
argument a help text, and the formats are shown where they are read.
"""

from __future__ import annotations

import argparse


def list_format(options: str, root: bool) -> str:
    """The utterance lists as ``vggvox.eval.lists.read_utterances`` reads them; ``root``:
    the command has --root."""
    base = "the list's folder, or from --root" if root else "the list's folder"
    return f"""\
list files ({options}):
  As VGGVox's enroll_list.csv and test_list.csv: one utterance a line,
  'filename speaker', separated by spaces or tabs (so neither may contain a
  space; a line of other than two fields is malformed):
      id10001/1zcIwhmdeo4/00001.wav id10001
      clips/bob_03.flac bob
  or VGGVoxRealTime's CSV form, read as such when the first non-blank line is
  the header 'filename,speaker' (any case): two fields split at the comma,
  spaces around them ignored (so a name may contain spaces):
      filename,speaker
      clips/alice_01.wav,alice smith
  Blank lines are skipped; there are no comment lines. Relative paths are taken
  from {base}; absolute paths as they are.
  A malformed line or an unusable file (missing, not audio, too little speech)
  is reported on stderr with its list and line, and left out; the rest is used."""


LIST_FORMAT = list_format("--enroll-list, --test-list", root=True)

TRIALS_FORMAT = """\
trial files (--trials), as VoxCeleb's veri_test.txt:
  One trial a line, 'label enroll test', separated by spaces or tabs; label 1
  means the two files are of the same speaker, 0 of different speakers:
      1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
      0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav
  Blank lines are skipped. Relative paths are taken from the trial file's
  folder, or from --root. A line that is not three fields with label 0 or 1,
  or a trial with an unusable file, is reported on stderr (file and line) and
  left out. EER and minDCF need scorable trials of both labels (else exit 1)."""

REPLAY_TARGET = """\
TARGET is an audio file, or a text list of audio files, told apart by content,
never by suffix. Audio is anything libsndfile reads or FFmpeg's audio
containers hold (.wav, .flac, .ogg, .oga, .opus, .mp3, .aiff, .aif, .m4a,
.webm, ...; any rate from 8 to 384 kHz, up to 32 channels), the same rule as
every command's. A list
is UTF-8 text: the first field of each line (up to a space, tab or comma) is
a path relative to the list's folder, so enroll_list.csv and test_list.csv
work as they are, in either form ('filename speaker', or 'filename,speaker'
with that header line, which is skipped). Blank lines are skipped. The files
are replayed one after another, each with its own events; one that is missing,
not audio or refused is named on stderr with its list and line, and the rest
go on.
exit status: 0 every file replayed; 1 a list only partly (the rest named on
stderr); 2 nothing replayed (bad input, a refused request, no daemon); 130
interrupted."""

LARGE_SETS = """\
very large enrolled sets (--index-above, default 50000 speakers, and more):
  Each test is searched through an approximate index (faiss IVF-PQ, built once
  per run: about 25 s for a million speakers on one core), and its best
  --rescore candidates (default 100) are scored exactly: at a million, recall@1
  99.9 % against exact search. A million scores per test are never computed, so
  results.csv has no 'score:NAME' columns (top1..top5 and their scores remain);
  'rank' is the true speaker's rank among those candidates, or '>N' (N:
  --rescore) when it is not one of them, and a top-x % figure whose cut-off is
  deeper than --rescore reads n/a (null in --json). Below the threshold all is
  exact, as before. For every score and exact ranks, raise --index-above above
  the number of speakers (memory: tests x speakers x 4 bytes)."""

_E = "examples:\n"

EXAMPLES: dict[str, str] = {
    "": _E + """\
  vggvox-client enroll alice a.wav b.wav     # through the running daemon
  vggvox-client listen                       # who is speaking, as it happens
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv --out r.csv
  vggvox-client verify --trials veri_test.txt --det det.png

enroll, speakers, remove, name, status, listen and replay need a running
vggvoxd; the others work on files alone, as do speakers --provisional, forget
and name of a provisional voice (identify --remember), on the store file.
Global options (--control, --events, --timeout, --log-level, --server-key,
--key) go before or after the command.
Exit status: 0 done, 1 nothing could be scored (replay: a list only partly
replayed), 2 bad arguments, a setup error or a refused request, 130
interrupted. A reader that stops reading (| head -1) ends a command quietly,
with status 0.""",
    "enroll": _E + """\
  vggvox-client enroll alice a.wav b.flac      # a new speaker, from files
  vggvox-client enroll alice c.wav             # alice exists: c.wav is appended
  vggvox-client enroll alice --live 10         # 10 s from the daemon's microphone
  vggvox-client enroll bob --live 10 --source kitchen   # from one of its sources
  vggvox-client enroll bob new.wav --replace   # bob's voiceprint from new.wav alone""",
    "speakers": _E + """\
  vggvox-client speakers
  vggvox-client speakers --json | jq '.speakers[].name'
  vggvox-client speakers --provisional         # voices identify --remember kept""",
    "forget": """\
A provisional voice's vectors, and where it was heard, are erased from the store's
files as remove erases a speaker's.

""" + _E + """\
  vggvox-client forget unknown-7
  vggvox-client forget --provisional --older-than 30d    # or 12h, 90m, 2w""",
    "remove": _E + """\
  vggvox-client remove alice""",
    "name": _E + """\
  vggvox-client name unknown-2 bob             # the voice 'status' lists as unknown-2
  vggvox-client name unknown-1 carol --source mic
  vggvox-client name unknown-7 alice           # a provisional voice in the store file""",
    "status": _E + """\
  vggvox-client status
  vggvox-client status --json
  vggvox-client status --control tcp://10.0.0.5:5561 --server-key vggvoxd.key \\
      --key ~/.vggvox/alice.key_secret      # a daemon on another machine (CURVE)""",
    "calibration": """\
Each of the daemon's sources learns how strangers score on its own channel (from
clips enrolled there: enroll --live, or enroll FILE... --source NAME; and from
turns it names surely) and raises its cutoff to match, never loosening it.

""" + _E + """\
  vggvox-client calibration                    # every source's rule, and what it rests on
  vggvox-client calibration show --source kitchen --json
  vggvox-client calibration reset --source kitchen   # back to the calibration as fitted""",
    "listen": _E + """\
  vggvox-client listen
  vggvox-client listen --topic turn --json
  vggvox-client listen --topic speech.start --topic speech.end --seconds 60""",
    "replay": REPLAY_TARGET + "\n\n" + _E + """\
  vggvox-client replay meeting.wav
  vggvox-client replay meeting.wav --realtime --json
  vggvox-client replay test_list.csv""",
    "hub": _E + """\
  vggvox-client hub --daemon tcp://10.0.0.2:5560 --daemon tcp://10.0.0.3:5560 \\
      --daemon-key /etc/vggvox/keys/vggvoxd.key --hub-key /etc/vggvox/keys/hub.key_secret \\
      --subscribers /etc/vggvox/keys/hub-subscribers \\
      --listen tcp://0.0.0.0:5570 --listen-control tcp://0.0.0.0:5571
  vggvox-client --events tcp://hub:5570 --control tcp://hub:5571 \\
      --server-key hub.key --key ~/.vggvox/alice.key_secret watch

Each daemon's public .key: one --daemon-key for all, or one per --daemon; the
hub's public key goes in every daemon's security.readers folder. Subscribers
name each source NODE/SOURCE (see docs/hub.md).""",
    "store": """\
Copies speakers, embeddings (with their model binding), provisional voices and room
calibrations in one transaction: all or nothing. Refused when the target holds
voiceprints of another model. The source is only read; stop the daemons that write
it first.

""" + _E + """\
  vggvox-client store migrate --from sqlite:/var/lib/vggvox/voiceprints.db \\
      --to postgresql://vggvox@db.lan/vggvox
  vggvox-client store migrate --from postgresql://vggvox@db.lan/vggvox --to sqlite:copy.db""",
    "keygen": _E + """\
  vggvox-client keygen /etc/vggvox/keys vggvoxd   # the daemon's pair
  vggvox-client keygen ~/.vggvox alice            # a client's pair""",
    "satellite": _E + """\
  vggvox-client keygen ~/.vggvox kitchen       # then copy kitchen.key to the daemon's
                                               # security.satellites folder
  vggvox-client satellite --server tcp://server:5562 --name kitchen \\
      --server-key vggvoxd.key --key ~/.vggvox/kitchen.key_secret
  vggvox-client satellite --server tcp://server:5562 --name hall --device 2 --buffer-s 30 \\
      --server-key vggvoxd.key --key ~/.vggvox/hall.key_secret
  vggvox-client satellite --print-unit > /etc/systemd/system/vggvox-satellite.service""",
    "offline": LIST_FORMAT + "\n\n" + _E + """\
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv --out r.csv
  vggvox-client offline --enroll-list enroll_list.csv --test-list test_list.csv \\
      --out r.csv --open-set --false-accept 0.01 --det openset.png --json""",
    "batch-offline": LIST_FORMAT + "\n\n" + LARGE_SETS + "\n\n" + _E + """\
  vggvox-client batch-offline --enroll-list enroll_list.csv --test-list test_list.csv \\
      --out r.csv --workers 8
  vggvox-client batch-offline --enroll-list lists/enroll.txt --test-list lists/test.txt \\
      --root /data/voxceleb1/wav --out r.csv --store voiceprints.db
  vggvox-client batch-offline --enroll-list million.csv --test-list test_list.csv \\
      --out r.csv --store voiceprints.db --index-above 100000 --nprobe 1024
  vggvox-client batch-offline --enroll-list enroll_list.csv --test-list test_list.csv \\
      --out r.csv --ray head.example:6379""",
    "verify": TRIALS_FORMAT + "\n\n" + _E + """\
  vggvox-client verify --trials veri_test.txt --root wav/
  vggvox-client verify --trials veri_test.txt --det det.png --scores scores.txt --json
  vggvox-client verify --trials veri_test.txt --root /shared/wav --ray auto""",
    "similarity": _E + """\
  vggvox-client similarity a.wav b.wav c.flac
  vggvox-client similarity *.wav --png matrix.png --model ge2e""",
    "identify": list_format("--enroll-list", root=False) + "\n\n" + _E + """\
  vggvox-client identify meeting.wav
  vggvox-client identify meeting.wav --enroll-list team.txt --rttm meeting.rttm --timeline
  vggvox-client identify recordings/*.m4a --rttm out/ --json out/ --workers 4
  vggvox-client identify /shared/archive/*.flac --rttm out/ --ray head.example:6379""",
    "evaluate": list_format("--enroll-list", root=False) + "\n\n" + _E + """\
  vggvox-client evaluate conv0.wav --rttm conv0.rttm --enroll-list conv0_enroll.txt
  vggvox-client evaluate meeting.wav --rttm meeting.rttm --png timeline.png --json""",
    "conversations": list_format("--material, --enroll-list", root=False) + "\n\n" + _E + """\
  vggvox-client conversations --material test_list.csv --enroll-list enroll_list.csv \\
      --out convs --count 3""",
    "calibrate": list_format("--list", root=False) + "\n\n" + _E + """\
  vggvox-client calibrate --list recordings.csv --model campplus-int8
  vggvox-client calibrate --list kitchen.csv --model ge2e --out kitchen.calibration.yaml""",
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
    epilog (each bridge's are its own: ``vggvox_client.bridges``), and each command
    without a description its one-line help as one."""
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, p in [("", parser), *sub.choices.items()]:
        shown = name.replace("batch_offline", "batch-offline")
        p.epilog = EXAMPLES.get(shown, p.epilog)  # a bridge brings its own
        p.formatter_class = Formatter
        summary = summaries.get(shown)
        if name and p.description is None and summary:
            p.description = summary[0].upper() + summary[1:] + "."
