"""The make targets install what each needs, and no more: a server that runs the daemon
(`make run`, `make install-service`) gets no browser, broker or test tools; `make test`
gets them. Read from make's own dry run of each target (`make -n -B`), so the test
checks the commands that would run, not a copy of the lists."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY_APT = {"chromium", "chromium-driver", "mosquitto", "tmux", "sox", "systemd-container",
                 "debootstrap", "postgresql", "iproute2"}
DEMO_ONLY_APT = {"pulseaudio", "pulseaudio-utils", "espeak-ng"}
TEST_ONLY_PIP = {"pytest", "pytest-timeout", "mypy", "ruff", "selenium", "onnx", "import-linter",
                 "ray", "pytest-xdist"}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, check=True).stdout


def apt_packages(commands: str) -> set[str]:
    """Every package the dry run's apt steps check for (each `for p in ...; do`)."""
    return {p for group in re.findall(r"for p in ([^;]*);", commands) for p in group.split()}


def pip_targets(commands: str) -> set[str]:
    return set(re.findall(r"pip install -q -c constraints.txt -e '([^']*)'", commands))


@pytest.mark.parametrize("target", ["run", "install-service"])
def test_the_daemons_targets_install_the_runtime_only(target: str) -> None:
    commands = dry_run(target)
    apt = apt_packages(commands)
    assert {"gcc", "portaudio19-dev", "python3-venv"} <= apt
    assert not apt & (TEST_ONLY_APT | DEMO_ONLY_APT), apt & (TEST_ONLY_APT | DEMO_ONLY_APT)
    assert pip_targets(commands) == {"."}


def test_demo_adds_the_virtual_microphone_and_voices_only() -> None:
    apt = apt_packages(dry_run("demo"))
    assert DEMO_ONLY_APT <= apt and not apt & TEST_ONLY_APT


def test_make_test_installs_the_test_stack() -> None:
    commands = dry_run("test")
    assert TEST_ONLY_APT | DEMO_ONLY_APT <= apt_packages(commands)
    assert pip_targets(commands) == {".[test]"}
    assert "pytest" in commands and "ruff check" in commands


def test_the_runtime_requirements_hold_no_test_tool() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = {re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
             for line in cfg["options"]["install_requires"].splitlines()
             if line.strip() and not line.strip().startswith("#")}
    tests = {re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
             for line in cfg["options.extras_require"]["test"].splitlines() if line.strip()
             and not line.strip().startswith("#")}
    assert not names & TEST_ONLY_PIP, names & TEST_ONLY_PIP
    assert TEST_ONLY_PIP <= tests


def test_make_deps_prints_what_the_targets_install() -> None:
    out = subprocess.run(["make", "-s", "deps"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    lines = {f"{who}: {what}": rest for who, what, rest in
             re.findall(r"^(.*?): (apt|pip): (.*)$", out, re.MULTILINE)}
    assert set(lines["run, install-service: apt"].split()) == apt_packages(dry_run("run"))
    assert set(lines["test, lint, bench: apt"].split()) == apt_packages(dry_run("test"))
    assert lines["run, install-service: pip"] == "." and lines["test, lint, bench: pip"] \
        == ".[test]"
