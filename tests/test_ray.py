"""--ray: batch-offline, verify and identify on a real local Ray cluster (a head node and a second
node joining it) give the local run's results byte for byte, and a worker killed mid-run
costs nothing: its shard runs again, and no file is counted twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import free_port
from raycluster import RayCluster

from vggvox_client.cli import main

# One cluster for the module: under pytest-xdist's --dist loadgroup (or loadfile) its
# tests share one worker, and so one cluster.
pytestmark = pytest.mark.xdist_group("ray")

SHARD_TITLE = "ray::_run_shard"
"""A Ray worker's process title while it runs a shard (``raybatch._run_shard``)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
    with RayCluster(nodes=2) as c:
        yield c


def _lists(fixtures: Path, folder: Path) -> tuple[Path, Path]:
    """The fixtures' first clip of each speaker to enroll, the other 8 to test."""
    rows = [ln.split(",")[:2] for ln in (fixtures / "manifest.csv").read_text().splitlines()[1:]]
    first = {s: p for p, s in reversed(rows)}
    enroll, test = folder / "enroll.txt", folder / "test.txt"
    enroll.write_text("".join(f"{fixtures / p} {s}\n" for s, p in first.items()))
    test.write_text("".join(f"{fixtures / p} {s}\n" for p, s in rows
                            if p not in first.values()))
    return enroll, test


def _batch(capsys: pytest.CaptureFixture[str], folder: Path, enroll: Path, test: Path,
           *extra: str) -> tuple[str, dict, dict[str, bytes]]:
    """batch-offline's CSV, JSON summary and cache (file -> bytes) for one run."""
    folder.mkdir()
    code = main(["batch-offline", "--enroll-list", str(enroll), "--test-list", str(test),
                 "--out", str(folder / "r.csv"), "--cache", str(folder / "cache"), "--json",
                 "--open-set", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    cache = {str(f.relative_to(folder / "cache")): f.read_bytes()
             for f in sorted((folder / "cache").rglob("*.npy"))}
    return (folder / "r.csv").read_text(), json.loads(out), cache


@pytest.fixture(scope="module")
def local_batch(tmp_path_factory: pytest.TempPathFactory, fixtures_dir: Path
                ) -> tuple[Path, Path, tuple[str, dict, dict[str, bytes]]]:
    folder = tmp_path_factory.mktemp("local")
    enroll, test = _lists(fixtures_dir, folder)
    mp = pytest.MonkeyPatch()
    try:  # capsys is function-scoped: run the local reference with stdout in a file
        out = folder / "stdout"
        with out.open("w") as f:
            mp.setattr("sys.stdout", f)
            code = main(["batch-offline", "--enroll-list", str(enroll), "--test-list",
                         str(test), "--out", str(folder / "r.csv"), "--cache",
                         str(folder / "cache"), "--json", "--open-set", "--workers", "1"])
    finally:
        mp.undo()
    assert code == 0
    cache = {str(f.relative_to(folder / "cache")): f.read_bytes()
             for f in sorted((folder / "cache").rglob("*.npy"))}
    return enroll, test, ((folder / "r.csv").read_text(), json.loads(out.read_text()), cache)


def test_batch_offline_on_two_nodes_is_the_local_run(
        cluster: RayCluster, local_batch: tuple[Path, Path, tuple[str, dict, dict[str, bytes]]],
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    enroll, test, local = local_batch
    on_ray = _batch(capsys, tmp_path / "ray", enroll, test, "--ray", cluster.address)
    assert on_ray[0] == local[0]  # every score, rank and decision, to the last digit
    assert on_ray[1] == local[1] and local[1]["n_scored"] == 8
    # The same cache entries, bit for bit: written by the driver under the same keys.
    assert on_ray[2] == local[2] and len(local[2]) == 16


def _verify(capsys: pytest.CaptureFixture[str], folder: Path, fixtures: Path,
            *extra: str) -> tuple[str, dict]:
    """verify's per-trial scores and JSON summary over trials of the fixtures' clips:
    every pair of clips, target when the speakers match."""
    folder.mkdir()
    rows = [ln.split(",")[:2] for ln in (fixtures / "manifest.csv").read_text().splitlines()[1:]]
    trials = folder / "trials.txt"
    trials.write_text("".join(f"{int(s1 == s2)} {p1} {p2}\n" for i, (p1, s1) in enumerate(rows)
                              for p2, s2 in rows[i + 1:]))
    code = main(["verify", "--trials", str(trials), "--root", str(fixtures), "--scores",
                 str(folder / "scores.txt"), "--cache", str(folder / "cache"), "--json",
                 *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return (folder / "scores.txt").read_text(), json.loads(out)


def test_verify_on_two_nodes_is_the_local_run(
        cluster: RayCluster, fixtures_dir: Path, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    local = _verify(capsys, tmp_path / "local", fixtures_dir, "--workers", "1")
    on_ray = _verify(capsys, tmp_path / "ray", fixtures_dir, "--ray", cluster.address)
    assert on_ray[0] == local[0] and local[0].count("\n") >= 20  # every trial's score
    assert on_ray[1] == local[1]  # EER, minDCF and the counts


class Killer(threading.Thread):
    """SIGKILLs the first of the cluster's workers seen running a shard."""

    def __init__(self, cluster: RayCluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.killed, self.done = cluster, 0, threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline:
            busy = self.cluster.processes(SHARD_TITLE)
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                self.killed = busy[0]
                return
            time.sleep(0.01)


def test_a_killed_worker_is_retried_and_nothing_counted_twice(
        cluster: RayCluster, local_batch: tuple[Path, Path, tuple[str, dict, dict[str, bytes]]],
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    enroll, test, local = local_batch
    killer = Killer(cluster)
    killer.start()
    try:
        on_ray = _batch(capsys, tmp_path / "ray", enroll, test, "--ray", cluster.address)
    finally:
        killer.done.set()
        killer.join(timeout=5)
    assert killer.killed, "no worker was seen running a shard"
    # The killed worker's shard was run again (else the run had failed), and each file
    # is in the results once, as in the local run.
    assert on_ray == local


def test_identify_on_two_nodes_is_the_local_run(
        cluster: RayCluster, fixtures_dir: Path, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("".join(f"{p} {p.name.split('__')[0]}\n"
                              for p in sorted(fixtures_dir.glob("ls-*.wav"))))
    recordings = [fixtures_dir / "stream_2spk.wav", tmp_path / "again.wav",
                  tmp_path / "missing.wav"]
    shutil.copyfile(recordings[0], recordings[1])
    rttm = {}
    for how in (["--workers", "2"], ["--ray", cluster.address]):
        out = tmp_path / f"{how[0][2:]}.rttm"
        code = main(["identify", *map(str, recordings), "--enroll-list", str(enroll),
                     "--no-overlap", "--no-cache", "--rttm", str(out), *how])
        _, err = capsys.readouterr()
        assert code == 0, err
        assert "missing.wav" in err  # reported, not fatal
        rttm[how[0]] = out.read_text()
    assert rttm["--ray"] == rttm["--workers"]
    assert "ls-3005" in rttm["--ray"] and "ls-3331" in rttm["--ray"]


def test_no_cluster_there_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      fixtures_dir: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed (the ray extra)")
    enroll, test = _lists(fixtures_dir, tmp_path)
    code = main(["batch-offline", "--enroll-list", str(enroll), "--test-list", str(test),
                 "--out", str(tmp_path / "r.csv"), "--cache",
                 str(tmp_path / "c"), "--ray", f"127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no Ray cluster answers there" in err


def test_without_ray_installed_is_one_line(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch,
                                           fixtures_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code = main(["verify", "--trials", str(fixtures_dir / "trials_all_pairs.txt"),
                 "--ray", "auto"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "vggvox-client: error: --ray needs the ray extra: pip install 'vggvox[ray]'\n"


def test_sigterm_ends_a_ray_run_with_143_and_its_tasks(
        cluster: RayCluster, tmp_path: Path, fixtures_dir: Path) -> None:
    """As a local run: status 143, no stack dump (Ray's own handler prints one, exit 1),
    and the run's tasks end with it."""
    enroll, test = _lists(fixtures_dir, tmp_path)
    client = Path(sys.executable).parent / "vggvox-client"
    p = subprocess.Popen([str(client), "batch-offline", "--enroll-list", str(enroll),
                          "--test-list", str(test), "--out", str(tmp_path / "r.csv"),
                          "--cache", str(tmp_path / "c"), "--ray", cluster.address],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not cluster.processes(SHARD_TITLE) and time.monotonic() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.01)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    finally:
        p.kill()
        p.wait(timeout=5)
    assert p.returncode == 143, err
    assert "SIGTERM received" not in err
    deadline = time.monotonic() + 10
    while cluster.processes(SHARD_TITLE) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cluster.processes(SHARD_TITLE)


def test_a_worker_sets_up_once_per_run_and_answers_each_item_once(tmp_path: Path) -> None:
    """raybatch._run_shard as a Ray worker runs it (no cluster needed): the run's setup
    (the model load) once per process and run, each item's result at its own index."""
    from vggvox_client import raybatch

    calls: list[str] = []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.chdir(tmp_path)  # the shard chdirs to the driver's folder
    try:
        for run, items in (("a", [(0, "x"), (1, "y")]), ("a", [(2, "z")]), ("b", [(0, "w")])):
            got = raybatch._run_shard(run, str(tmp_path), calls.append, (run,), str.upper,
                                      items)
            assert got == [(i, s.upper()) for i, s in items]
    finally:
        monkeypatch.undo()
    assert calls == ["a", "b"]
    with pytest.raises(RuntimeError, match="other items"):
        raybatch._checked([(0, "x"), (1, "y")], [(0, "X"), (0, "X")])
