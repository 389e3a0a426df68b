"""`pip install .` (not editable) is a first-class path: the wheel, installed into a
fresh virtual environment, runs the offline clients from any folder, and holds
neither the maintainer's tools nor anything of the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, copy_tracked


def run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as pip builds it, from a copy of the tracked files: an in-tree
    build/ folder left by an older build must not leak into what is tested."""
    src = tmp_path_factory.mktemp("src")
    if not copy_tracked(src):
        pytest.skip("not a git checkout: cannot tell which files a release holds")
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        src, 300)
    (built,) = out.glob("vggvox-*.whl")
    return built


def test_the_wheel_holds_the_runtime_and_not_the_maintainers_tools(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/data/share/vggvox"
    for shipped in (f"{data}/vggvoxd.yaml", f"{data}/vggvoxd.service", "vggvox/py.typed",
                    "vggvoxd/py.typed", "vggvox_client/py.typed", "vggvox_weights/campplus.onnx",
                    "vggvox_weights/campplus.yaml",
                    "vggvox_weights/ge2e.onnx", "vggvox_weights/campplus.calibration.yaml",
                    "vggvox_weights/campplus-int8.onnx", "vggvox_weights/campplus-int8.yaml",
                    "vggvox_weights/segmentation-3.0.onnx",
                    "vggvox_weights/segmentation-3.0.yaml"):
        assert shipped in names, shipped
    for tool in ("vggvox_weights/export.py", "vggvox_weights/calibrate_shipped.py",
                 "vggvox_weights/quantize.py", "vggvox_weights/segmask.py"):
        assert tool not in names, f"{tool} is a maintainer's tool, not part of the package"
    assert not any(n.startswith(("tests/", "bench/", "weights/")) for n in names)


def test_a_fresh_venv_runs_similarity_and_offline_from_another_folder(
        wheel: Path, voices: dict[str, list[Path]], tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    # The versions CI tested, as make test installs them.
    run([str(bin_dir / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"),
         str(wheel)], tmp_path, 600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    client = str(bin_dir / "vggvox-client")

    sim = json.loads(run([client, "similarity", "--json", *map(str, voices["alice"][:2]),
                          str(voices["bob"][0])], elsewhere, 120).stdout)
    matrix = sim["matrix"]
    assert matrix[0][1] > matrix[0][2], matrix  # alice is nearer alice than bob

    (elsewhere / "enroll_list.csv").write_text("".join(
        f"{p} {name}\n" for name, paths in voices.items() for p in paths[:2]))
    (elsewhere / "test_list.csv").write_text("".join(
        f"{paths[2]} {name}\n" for name, paths in voices.items()))
    done = run([client, "offline", "--enroll-list", "enroll_list.csv", "--test-list",
                "test_list.csv", "--out", "results.csv", "--json"], elsewhere, 180)
    summary = json.loads(done.stdout)
    assert summary["top1"] == 1.0 and summary["n_scored"] == 2, summary
    assert (elsewhere / "results.csv").read_text().count("\n") == 3  # header + 2 rows

    # The installed package finds its own config template, not the checkout's.
    shown = run([str(bin_dir / "vggvoxd"), "--print-config"], elsewhere, 60).stdout
    assert shown == (ROOT / "config" / "vggvoxd.yaml").read_text()
