"""One version everywhere: the package's metadata, `vggvox.__version__`, both programs'
`--version` and the CHANGELOG's latest entry."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from vggvox import __version__

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def latest_changelog_version() -> str:
    heading = re.search(r"^## (\d+\.\d+\.\d+)\b", (ROOT / "CHANGELOG.md").read_text(),
                        re.MULTILINE)
    assert heading, "CHANGELOG.md has no '## X.Y.Z' entry"
    return heading.group(1)


def test_the_version_is_one_everywhere() -> None:
    assert version("vggvox") == __version__ == latest_changelog_version()
    for program in ("vggvoxd", "vggvox-client"):
        out = subprocess.run([str(BIN / program), "--version"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert out == f"{program} {__version__}\n"
