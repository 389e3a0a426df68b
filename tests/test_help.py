"""--help is a manual: every argument has a help text, every command examples,
and the list and trial formats are spelled out where they are used."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from vggvox_client.cli import build_parser as client_parser
from vggvoxd.main import build_parser as daemon_parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [a.dest for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
            and (not a.help or a.help == argparse.SUPPRESS)]


@pytest.mark.parametrize("parser", [client_parser(), daemon_parser()], ids=["client", "daemon"])
def test_every_argument_of_both_programs_has_help(parser: argparse.ArgumentParser) -> None:
    assert undocumented(parser) == []
    for name, sub in (commands(parser) if parser.prog == "vggvox-client" else {}).items():
        assert undocumented(sub) == [], name


def test_every_command_shows_examples_of_itself() -> None:
    parser = client_parser()
    assert "examples:\n  vggvox-client " in parser.format_help()
    assert "examples:\n  vggvoxd" in daemon_parser().format_help()
    for name, sub in commands(parser).items():
        shown = "batch-offline" if name == "batch_offline" else name
        assert f"\n  vggvox-client {shown} " in sub.format_help(), name


def test_the_formats_are_in_the_help_of_the_commands_that_read_them() -> None:
    cmds = commands(client_parser())
    for name in ("offline", "batch-offline"):
        text = cmds[name].format_help()
        assert "'filename speaker'" in text and "filename,speaker" in text, name
    assert "'label enroll test'" in cmds["verify"].format_help()
    assert "a text list of\nfiles" in cmds["replay"].format_help()


def test_the_old_batch_offline_name_works_but_is_not_shown() -> None:
    parser = client_parser()
    assert "batch_offline" not in parser.format_help()
    args = parser.parse_args(["batch_offline", "--enroll-list", "e", "--test-list", "t",
                              "--out", "r.csv"])
    assert args.command == "batch_offline"


def test_help_from_the_installed_program() -> None:
    done = subprocess.run([sys.executable, "-m", "vggvox_client.cli", "verify", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "'label enroll test'" in done.stdout, done.stderr
