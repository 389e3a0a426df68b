"""--help is a manual: every argument has a help text, every command examples (that
parse), and the list and trial formats are spelled out where they are used.
Fast: no data, no daemon, no model."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from vggvox_client.cli import build_parser as client_parser
from vggvox_client.replay import AUDIO_SUFFIXES
from vggvoxd.main import build_parser as daemon_parser

LIST_PHRASE = "'filename speaker'"
TRIALS_PHRASE = "'label enroll test'"


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(subparsers(parser).choices)


def visible(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands listed in the program's help (not the hidden old name)."""
    listed = {a.dest for a in subparsers(parser)._choices_actions}
    return {name: p for name, p in commands(parser).items() if name in listed}


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
            and (not a.help or a.help == argparse.SUPPRESS)]


def examples(text: str, program: str) -> list[list[str]]:
    """The arguments of each example command line of an epilog (continuations joined,
    comments, pipes and redirections cut off)."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if not (line.strip().startswith(program + " ") or line.strip() == program
                or f"| {program}" in line):  # prose, not a command line
            continue
        words = shlex.split(line, comments=True)
        words = words[words.index(program) + 1:]
        cut = [i for i, w in enumerate(words) if w in ("|", ">")]
        found.append(words[:cut[0]] if cut else words)
    return found


@pytest.mark.parametrize("build", [client_parser, daemon_parser], ids=["client", "daemon"])
def test_every_argument_of_both_programs_has_help(
        build: Callable[[], argparse.ArgumentParser]) -> None:
    parser = build()
    assert undocumented(parser) == []
    for name, sub in (commands(parser) if parser.prog == "vggvox-client" else {}).items():
        assert undocumented(sub) == [], name


def test_every_command_is_listed_with_a_summary() -> None:
    listed = subparsers(client_parser())._choices_actions
    assert listed and all(a.help and a.help != argparse.SUPPRESS for a in listed)


def test_every_command_shows_examples_of_itself() -> None:
    parser = client_parser()
    assert "examples:\n  vggvox-client " in parser.format_help()
    assert "examples:\n  vggvoxd" in daemon_parser().format_help()
    for name, sub in visible(parser).items():
        lines = [ln.strip() for ln in (sub.epilog or "").splitlines()]
        assert any(ln.startswith(f"vggvox-client {name} ") for ln in lines), name
        # Shown as written: the formatter keeps the example lines whole.
        assert f"\n  vggvox-client {name} " in sub.format_help(), name
        assert sub.description, name


@pytest.mark.parametrize("build,program", [(client_parser, "vggvox-client"),
                                           (daemon_parser, "vggvoxd")], ids=["client", "daemon"])
def test_every_example_parses(build: Callable[[], argparse.ArgumentParser], program: str,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # output files are checked for an existing folder only
    parser = build()
    epilogs = [parser.epilog or ""]
    if program == "vggvox-client":
        epilogs += [p.epilog or "" for p in visible(parser).values()]
    lines = [words for text in epilogs for words in examples(text, program)]
    assert len(lines) >= len(epilogs)
    for words in lines:
        try:
            build().parse_args(words)
        except SystemExit:
            pytest.fail(f"example does not parse: {program} {shlex.join(words)}")


def test_the_formats_are_in_the_help_of_the_commands_that_read_them() -> None:
    cmds = commands(client_parser())
    for name in ("offline", "batch-offline", "batch_offline", "evaluate", "conversations"):
        text = cmds[name].format_help()
        assert LIST_PHRASE in text and "header 'filename,speaker'" in text, name
        assert "no comment lines" in text, name
    for name in ("offline", "batch-offline"):
        assert "or from --root" in cmds[name].format_help(), name
    assert TRIALS_PHRASE in cmds["verify"].format_help()
    assert "label 0 or 1" in cmds["verify"].format_help()
    replay = cmds["replay"].format_help()
    assert "TARGET is an audio file" in replay and "a text list of audio files" in replay
    assert all(s in replay for s in AUDIO_SUFFIXES)  # the suffixes replay_files takes


def test_the_old_batch_offline_name_works_but_is_not_shown() -> None:
    parser = client_parser()
    assert "batch_offline" not in parser.format_help()
    assert "batch_offline" not in visible(parser)
    args = parser.parse_args(["batch_offline", "--enroll-list", "e", "--test-list", "t",
                              "--out", "r.csv"])
    assert args.command == "batch_offline"


def test_help_from_the_installed_program() -> None:
    done = subprocess.run([sys.executable, "-m", "vggvox_client.cli", "verify", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and TRIALS_PHRASE in done.stdout, done.stderr
