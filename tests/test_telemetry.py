"""ONNX Runtime's Linux wheels collect usage telemetry unless told not to: a device
id and an event cache under ~/.cache/Microsoft, uploaded when the network allows.
Found running the daemon under a real systemd (issue 21: its journal showed
"Failed to persist telemetry device ID"). Importing vggvox opts out, so that
embedding a voice writes nothing outside what the user asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

EMBED = """
import numpy as np
from vggvox import load_model
load_model("campplus-int8").embed(np.random.default_rng(0).normal(0, 0.1, 32000).astype("f4"))
"""


def test_embedding_leaves_no_telemetry_behind(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / ".cache"))
    done = subprocess.run([sys.executable, "-c", EMBED], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "telemetry" not in done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == []


def test_importing_vggvox_opts_out_before_onnxruntime_loads() -> None:
    code = ("import os, sys; import vggvox; assert 'onnxruntime' not in sys.modules; "
            "print(os.environ['ORT_DISABLE_TELEMETRY'])")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
