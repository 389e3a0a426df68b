"""Each ONNX export against its PyTorch original (slow; needs torch and the source wheels).

Run it in the export environment described in weights/export.py:
    /tmp/xenv/bin/python -m pytest tests/test_parity.py -m slow
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXPORT = Path(__file__).resolve().parent.parent / "weights" / "export.py"


def test_onnx_matches_pytorch(speech_dir: Path) -> None:
    for module in ("torch", "speakerlab", "resemblyzer", "librosa"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: parity runs in the export environment")
    spec = importlib.util.spec_from_file_location("vggvox_export", EXPORT)
    assert spec and spec.loader
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    assert export.check_parity() >= 0.9999
