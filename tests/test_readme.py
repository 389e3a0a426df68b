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
