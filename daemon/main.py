"""Entry point of vggvoxd (filled in by the daemon work)."""

from __future__ import annotations

import sys


def main() -> int:
    print("vggvoxd: the daemon is not built yet; see vggvox-client offline", file=sys.stderr)
    return 1
