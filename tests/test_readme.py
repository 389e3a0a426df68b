"""The README's in-process example runs as printed, on real speech."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_readme_library_example(tmp_path: Path, fixtures_dir: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(from vggvox import .*?)```", readme, re.S)
    assert code, "the README lost its in-process example"
    for name, src in {"a1": "ls-3005__3005-163389-0000", "a2": "ls-3005__3005-163389-0001",
                      "b1": "ls-3331__3331-159605-0000", "meeting": "stream_2spk"}.items():
        shutil.copy(fixtures_dir / f"{src}.wav", tmp_path / f"{name}.wav")
    (tmp_path / "example.py").write_text(code.group(1))
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    labels = [line.split()[-1] for line in out.splitlines()]
    merged = [n for i, n in enumerate(labels) if i == 0 or n != labels[i - 1]]
    assert merged == ["alice", "bob", "alice", "bob"], out


def test_make_alone_lists_the_targets_and_sets_nothing_up() -> None:
    if shutil.which("make") is None:
        import pytest

        pytest.skip("no make on this machine")
    done = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for target in ("run", "demo", "test", "install-service"):
        assert re.search(rf"^  make {target} +\S", done.stdout, re.M), done.stdout
    assert "apt-get" not in done.stdout and "venv" not in done.stdout.split("Then:")[0]


def test_the_quick_start_puts_the_client_on_path() -> None:
    """Each command of the quick start runs as written from a fresh clone: the client
    is in .venv/bin, so the README activates it before the first client command."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\nmake run &.*?```", readme, re.S)
    assert block, "the README lost its quick start"
    lines = block.group(0).splitlines()
    first_client = next(i for i, ln in enumerate(lines) if ln.startswith("vggvox-client"))
    assert any(ln.startswith(". .venv/bin/activate") for ln in lines[:first_client])


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_and_docs_links_lead_somewhere() -> None:
    """The README sends users to docs/ for the internals: every relative link and
    its #anchor must exist."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]*)(?:#([^)]*))?\)", page.read_text()):
            path, anchor = target
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to missing {path}"
            if anchor:
                anchors = {_anchor(h) for h in re.findall(r"^#+ (.*)$", linked.read_text(), re.M)}
                assert anchor in anchors, f"{page.name}: no heading for #{anchor} in {linked.name}"
