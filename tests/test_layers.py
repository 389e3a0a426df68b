"""The layers hold, and `make lint` fails when an import goes the wrong way.

The contracts are setup.cfg's ``[importlinter]`` sections, run by ``lint-imports``
(make lint): the daemon and the clients above the protocol, the protocol above
the library, the weights below all, and evaluation (vggvox.eval) beside the daemon,
on the library. Each wrong-way import below is planted in a
copy of the four packages, and ``lint-imports`` must name the contract it breaks
and the import that breaks it.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
# Where each package lives in the checkout (setup.cfg's package_dir): the copy puts each
# at its top, where lint-imports (which puts its working folder first on sys.path) finds it.
PACKAGES = {"vggvox": "vggvox", "vggvoxd": "daemon/vggvoxd",
            "vggvox_client": "clients/vggvox_client",
            "vggvox_weights": "weights/vggvox_weights"}


def contract(key: str) -> str:
    """A contract's name, as lint-imports reports it: ``[importlinter:contract:KEY]``."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg[f"importlinter:contract:{key}"]["name"]


def lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    # No cache: a run must not leave .import_linter_cache in the checkout.
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=folder, capture_output=True,
                          text=True, timeout=60)


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and " kept, 0 broken." in done.stdout, done.stdout


def test_make_lint_runs_the_contracts() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "-B", "lint"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert "lint-imports" in dry, dry


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four packages' Python files and setup.cfg's contracts, copied once."""
    base = tmp_path_factory.mktemp("layers")
    for name, folder in PACKAGES.items():
        shutil.copytree(ROOT / folder, base / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.html"))
    shutil.copy(ROOT / "setup.cfg", base / "setup.cfg")
    return base


# (module's file in the copy, the line added, the contract it breaks, what the report says)
WRONG_WAY = {
    "library imports the daemon": (
        "vggvox/audio.py", "import vggvoxd", "packages",
        "vggvox is not allowed to import vggvoxd"),
    "protocol imports the clients": (
        "vggvox/protocol/pcm.py", "import vggvox_client.client", "packages",
        "vggvox is not allowed to import vggvox_client"),
    "daemon imports the clients": (
        "vggvoxd/handlers.py", "from vggvox_client import Client", "packages",
        "vggvoxd is not allowed to import vggvox_client"),
    "weights import the library": (
        "vggvox_weights/__init__.py", "import vggvox.audio", "packages",
        "vggvox_weights is not allowed to import vggvox"),
    "library imports the protocol": (
        "vggvox/stream/recognizer.py", "from vggvox.protocol import events", "library",
        "vggvox.stream is not allowed to import vggvox.protocol"),
    "a module added later": (
        "vggvox/newmodule.py", "from vggvox.protocol.pcm import to_pcm", "library",
        "vggvox.newmodule is not allowed to import vggvox.protocol"),
    "the library's top module": (
        "vggvox/__init__.py", "import vggvox.protocol.events", "library-init",
        "vggvox is not allowed to import vggvox.protocol.events"),
    "daemon imports evaluation": (
        "vggvoxd/status.py", "from vggvox.eval.metrics import eer", "eval",
        "vggvoxd is not allowed to import vggvox.eval"),
    "library imports evaluation": (
        "vggvox/stream/recognizer.py", "import vggvox.eval.lists", "eval",
        "vggvox.stream is not allowed to import vggvox.eval"),
}


@pytest.mark.parametrize("case", list(WRONG_WAY))
def test_a_wrong_way_import_breaks_its_contract(case: str, packages: Path,
                                                tmp_path: Path) -> None:
    where, line, key, report = WRONG_WAY[case]
    tree = tmp_path / "tree"
    shutil.copytree(packages, tree)
    module = tree / where
    module.write_text((module.read_text() if module.exists() else "") + f"\n{line}\n")
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    out = " ".join(done.stdout.split())  # the report wraps long names
    assert f"{contract(key)} BROKEN" in out and report in out, out[-3000:]


def test_the_benches_reach_the_tests_helpers_through_benchkit_alone() -> None:
    """bench/benchkit.py is the one module of bench/ that puts tests/ on sys.path, and every
    helper it hands the benches is still where it says (a test module moved or renamed
    breaks this, not a bench run days later)."""
    touching = sorted(p.name for p in (ROOT / "bench").glob("*.py") if "sys.path" in p.read_text())
    assert touching == ["benchkit.py"], touching
    done = subprocess.run(
        [sys.executable, "-c", "import benchkit\nfor name in benchkit._HARNESS:\n"
         "    getattr(benchkit, name)"],
        cwd=ROOT / "bench", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
