"""The bridges: commands that follow a running vggvoxd's events and render who is
speaking somewhere else (a terminal, a web page, an MQTT broker, a webhook).

Each bridge is one module (or, with helpers of its own, one package) of this
package that declares ``BRIDGE = Bridge(...)``: its command's name, summary,
examples, ``add_arguments`` and ``run``. ``add_parsers`` finds them all, so the
command line needs no edit per bridge. A bridge's module is imported for every
``vggvox-client`` command (to build the parser): keep its top light and import
what ``run`` needs inside it. What the bridges render is one model,
``speaking.SpeakingState``, fed with the daemon's typed events.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vggvox_client.connection import Connection


@dataclass(frozen=True)
class Bridge:
    """One bridge command, as its module declares it (``BRIDGE``)."""

    name: str
    """The command: ``vggvox-client NAME``."""
    help: str
    """Its one line in ``vggvox-client --help``."""
    examples: str
    """Its epilog: ``examples:`` and command lines that parse (tests/test_help.py)."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Connection, argparse.Namespace], int]
    """The bridge until it is stopped; its exit status. The connection is made from
    the global options (--control, --events, --timeout, the CURVE keys)."""


@cache
def bridges() -> dict[str, Bridge]:
    """Every bridge of this package, by command name, in name order; a ValueError if
    two modules declare the same name (one would silently hide the other)."""
    found: dict[str, tuple[Bridge, str]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        bridge = getattr(module, "BRIDGE", None)
        if not isinstance(bridge, Bridge):  # speaking.py and helper modules declare none
            continue
        if bridge.name in found:
            raise ValueError(f"two bridges are named {bridge.name!r}: in "
                             f"{found[bridge.name][1]} and {module.__name__}")
        found[bridge.name] = bridge, module.__name__
    return {name: found[name][0] for name in sorted(found)}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """A subcommand for each bridge, with its examples."""
    for bridge in bridges().values():
        p = sub.add_parser(bridge.name, help=bridge.help)
        bridge.add_arguments(p)
        p.epilog = bridge.examples


def run(args: argparse.Namespace) -> int:
    """``vggvox-client BRIDGE ...``: the bridge ``args.command``, connected as the global
    options say."""
    from vggvox_client.daemon_cmds import connect

    return bridges()[args.command].run(connect(args), args)
