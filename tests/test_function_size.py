"""The house's size rule, kept: no function of the product is 60 lines or longer
(issue 23's target; a long function is where a newcomer stops reading)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PRODUCT = ("vggvox", "daemon/vggvoxd", "clients/vggvox_client")
LIMIT = 60


def test_every_function_of_the_product_is_under_60_lines() -> None:
    long = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines >= LIMIT:
                        long.append(f"{Path(path).relative_to(ROOT)}:{node.lineno} "
                                    f"{node.name}: {lines} lines")
    assert not long, "split these (under 60 lines each):\n" + "\n".join(long)
