"""Issue 8: faults and floods against the real daemon process.

Faults are injected by tests/fault_daemon.py, which runs the real vggvoxd with
one stage patched to raise (chosen by VGGVOX_FAULT), so that the product code
carries no fault hooks. Floods are real connections to the real ipc sockets of
a daemon started under a low open-files limit.
"""

from __future__ import annotations

import grp
import os
import re
import resource
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_proc import DaemonProcess
from floods import (
    ask_status,
    connect_raw,
    connection_cap,
    dealer,
    flood,
    limited,
    open_fds,
    status_within,
)

from vggvox.audio import load_audio, to_int16

FAULT_DAEMON = Path(__file__).with_name("fault_daemon.py")
RESUME_S = 10.0
"""The issue's bound: events resume, or the process exits, within this long."""


def faulty(tmp: Path, fault: str) -> DaemonProcess:
    """A daemon on stdin whose stage fails as VGGVOX_FAULT says (see fault_daemon.py)."""
    d = DaemonProcess(tmp, source="stdin", env={"VGGVOX_FAULT": fault})
    d.argv = [d.argv[0], str(FAULT_DAEMON), *d.argv[3:]]  # in place of -m vggvoxd.main
    return d


class Feeder:
    """Writes speech to the daemon's stdin in 100 ms blocks at ``speed`` times real
    time, in a thread, until the audio ends, the daemon exits or ``stop``."""

    def __init__(self, d: DaemonProcess, pcm: np.ndarray, speed: float = 3.0) -> None:
        self.d, self.pcm, self.speed = d, pcm, speed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        assert self.d.proc is not None and self.d.proc.stdin is not None
        for i in range(0, len(self.pcm), 1600):
            if self._stop.is_set():
                return
            try:
                self.d.proc.stdin.write(self.pcm[i:i + 1600].tobytes())
                self.d.proc.stdin.flush()
            except (BrokenPipeError, ValueError):  # the daemon exited (the point of some tests)
                return
            self._stop.wait(0.1 / self.speed)


@pytest.fixture
def speech(fixtures_dir: Path) -> np.ndarray:
    """About 33 s of a real two-speaker conversation (the fixture, twice), as int16."""
    x = to_int16(load_audio(fixtures_dir / "stream_2spk.wav"))
    return np.concatenate([x, x])


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test started: stopped at its end, whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        if d.proc is not None:
            d.stop()


# ---------------------------------------------------------------- faults in stages


def test_a_transient_fault_in_the_embedder_stage_stops_events_then_they_resume(
        tmp_path: Path, speech: np.ndarray, daemons: list[DaemonProcess]) -> None:
    """One decide call raises: its batch is lost, and `speaker` events go on for the
    audio after it within 10 s; status shows the failure and its error."""
    d = faulty(tmp_path, "decide:6").start()
    daemons.append(d)
    sub = d.conn.subscribe(["speaker"])
    time.sleep(0.3)  # the subscription is in place before any event
    fault_seen: tuple[float, float] | None = None  # (monotonic time, stream seconds)
    after: list[dict] = []
    try:
        with Feeder(d, speech):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not after:
                ev = d.conn.receive(sub, 0.1)
                if fault_seen is None:
                    status = d.conn.request("status", timeout=5)
                    if status["stages"]["embedder"]["failures"]:
                        fault_seen = (time.monotonic(), status["stream_s"])
                        deadline = fault_seen[0] + RESUME_S
                elif ev is not None and ev["t_end"] > fault_seen[1]:
                    after.append(ev)  # a window captured after the fault was seen
                    print(f"speaker events again {time.monotonic() - fault_seen[0]:.1f} s "
                          "after the fault was seen")
    finally:
        sub.close()
    assert fault_seen is not None, f"the fault never happened: {d.output()}"
    assert after, f"no speaker event within {RESUME_S} s of the fault: {d.output()}"
    stage = d.conn.request("status", timeout=5)["stages"]["embedder"]
    assert stage["state"] == "ok" and stage["failures"] == 1 and stage["lost_jobs"] >= 1
    assert stage["last_error"] == "RuntimeError: injected fault: decide call 6"
    assert "embedder: failed (1 in a row)" in d.output()
    assert d.proc is not None and d.proc.poll() is None


@pytest.mark.parametrize("fault, stage", [("decide:1+", "embedder"), ("encode:1+", "events")])
def test_a_stage_that_keeps_failing_makes_the_daemon_exit_1(
        tmp_path: Path, speech: np.ndarray, daemons: list[DaemonProcess], fault: str,
        stage: str) -> None:
    """Every call fails, with speech coming in: the process exits 1 within 10 s of
    the audio (the first possible fault), with a CRITICAL line naming the stage."""
    d = faulty(tmp_path, fault).start()
    daemons.append(d)
    assert d.proc is not None
    with Feeder(d, speech):
        t0 = time.monotonic()
        try:
            code = d.proc.wait(timeout=RESUME_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {RESUME_S} s after the audio began: {d.output()}")
    took = time.monotonic() - t0
    assert code == 1, d.output()
    # After the line's timestamp (logsetup.py).
    critical = [line[line.index("CRITICAL "):] for line in d.output().splitlines()
                if "CRITICAL " in line]
    assert len(critical) == 1, d.output()
    assert re.fullmatch(rf"CRITICAL vggvoxd\.daemon: {stage} failed 5 times in a row: "
                        r"RuntimeError: injected fault: \w+ call \d+; exiting so that the "
                        r"service manager restarts vggvoxd", critical[0]), critical
    print(f"{stage}: exit {code} {took:.1f} s after the audio began")


def test_a_permanent_fault_exits_even_when_speech_comes_seldom(
        tmp_path: Path, fixtures_dir: Path, daemons: list[DaemonProcess]) -> None:
    """A microphone's pace: 4 s utterances with 4 s pauses, at real time, and a decider
    that always raises. The idle turns between windows must not reset the count of
    failures (guard.py: only work done does), or the daemon never exits."""
    utterance = to_int16(load_audio(fixtures_dir / "vctk-p225__p225_003.wav"))[:4 * 16000]
    pcm = np.concatenate([utterance, np.zeros(4 * 16000, np.int16)] * 3)
    d = faulty(tmp_path, "decide:1+").start()
    daemons.append(d)
    assert d.proc is not None
    with Feeder(d, pcm, speed=1.0):
        try:
            code = d.proc.wait(timeout=RESUME_S)
        except subprocess.TimeoutExpired:
            stage = d.conn.request("status", timeout=5)["stages"]["embedder"]
            pytest.fail(f"still running {RESUME_S} s after the audio began: {stage}")
    assert code == 1 and "CRITICAL vggvoxd.daemon: embedder failed 5 times" in d.output()


def test_idle_turns_do_not_end_a_run_of_failures() -> None:
    """Guard.run: a step that found no work (None) counts neither way; work done (True)
    ends a run of failures."""
    from vggvoxd.guard import MAX_FAILURES, Guard

    def stage(script: str) -> tuple[Guard, list[str]]:
        """F: a failing step, i: an idle one, w: work done; then the stage ends."""
        turns, fatal = iter(script), []  # type: ignore[var-annotated]

        def step() -> bool | None:
            turn = next(turns, "")
            if turn == "F":
                raise RuntimeError("broken")
            return {"i": None, "w": True, "": False}[turn]

        g = Guard("test", fatal.append)
        g.run(step, threading.Event())
        return g, fatal

    g, fatal = stage("FiiFiFiiiFiF" + "i" * 3)  # 5 failures between idle turns
    assert fatal == ["test failed 5 times in a row: RuntimeError: broken"] and g.failed
    g, fatal = stage("FiFiFwFiFiFi")  # work done in between: the run starts again
    assert not fatal and g.failures == 6 and g.in_a_row == 3
    assert g.health()["state"] == "retrying"  # its last work failed, idle since
    assert MAX_FAILURES == 5


# ---------------------------------------------------------------- connection floods


@pytest.fixture
def client_files() -> Iterator[None]:
    """This process opens a thousand sockets or more: raise its own soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if want < 2048:
        pytest.skip(f"this process may open only {hard} files (hard limit)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


LOW_LIMIT = 1024
"""Open files the daemon may have in the flood test (soft and hard limits).

It used to abort at ~1,010 held connections under it. At 256 it now holds as
well on an idle machine, but not always on a busy one (2 cores, both busy: 3
aborts in 12 runs): the cap is enforced from Python, and libzmq's I/O thread
accepts ~50 connections a millisecond while the socket's thread waits for a
CPU. See connlimit.py."""


def test_control_connections_at_the_file_limit_and_past_it(
        tmp_path: Path, client_files: None, daemons: list[DaemonProcess]) -> None:
    """Under a hard limit of 1,024 open files (the daemon cannot raise it), ~1,010
    held connections used to abort the daemon (libzmq, EMFILE). Up to its cap it
    holds them and answers; past it, it drops them all and binds again: it stays up,
    and answers `status` again once the flood is closed."""
    group = grp.getgrgid(os.getgid()).gr_name  # the socket is shared with our own group
    d = limited(tmp_path, LOW_LIMIT, ["--socket-group", group]).start()
    daemons.append(d)
    cap, path = connection_cap(d), d.conn.control[len("ipc://"):]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert 16 <= cap < LOW_LIMIT // 2, cap
    client = dealer(d.conn.control)
    held: list[socket.socket] = []
    try:
        assert ask_status(client, 5), "a client that stays connected"
        # At the limit: the cap, less this client, and the status request's two (the
        # client probes the socket file before it connects).
        flood(path, held, cap - 4, 5)
        assert len(held) == cap - 4
        time.sleep(0.3)  # the daemon has seen them all
        assert status_within(d, 2) < 2 and ask_status(client, 5), "answers at the limit"
        assert "reached the cap" not in d.output()
        # Past it: as many more as it takes (up to 1,000) for 3 s, as fast as they go,
        # all held on this side.
        refused = flood(path, held, 1000 + cap, 3)
        assert d.proc is not None and d.proc.poll() is None, d.output()
        print(f"cap {cap}: {len(held)} connections made, {refused} refused, "
              f"{open_fds(d)} fds open in the daemon")
        for s in held:
            s.close()
        held.clear()
        took = status_within(d, 12)
        reply = ask_status(client, 12)  # the client it had reconnects by itself
    finally:
        for s in held:
            s.close()
        client.close()
    assert reply and reply["ok"], "the connected client is answered again"
    st = os.stat(path)  # the file the second bind made, given the first one's mode and group
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
    assert d.proc.poll() is None and open_fds(d) < 40, open_fds(d)
    warnings = re.findall(r"WARNING vggvoxd\.connlimit: control: (\d+) connections reached "
                          rf"the cap of {cap} \(open-files limit {LOW_LIMIT}\)", d.output())
    assert len(warnings) == 1, d.output()  # once per episode
    code, _ = d.stop()
    assert code == 0
    print(f"{warnings[0]} connections when it shed; status again {took:.1f} s after the "
          "flood closed")


def test_an_events_flood_is_shed_too(tmp_path: Path, client_files: None,
                                     daemons: list[DaemonProcess]) -> None:
    """The events socket shares the budget: a flood on it (hard limit 4,096 files)
    is shed too; the daemon stays up, answers, and takes subscribers again."""
    d = limited(tmp_path, 4096).start()
    daemons.append(d)
    cap, path = connection_cap(d), d.conn.events[len("ipc://"):]
    held: list[socket.socket] = []
    try:
        refused = flood(path, held, 6000, 3)
        assert d.proc is not None and d.proc.poll() is None, d.output()
        print(f"cap {cap}: {len(held)} connections made, {refused} refused")
    finally:
        for s in held:
            s.close()
    assert status_within(d, 12) < 12
    assert "WARNING vggvoxd.connlimit: events: " in d.output(), d.output()
    deadline, again = time.monotonic() + 12, None
    while again is None and time.monotonic() < deadline:  # bound again, after its pause
        again = connect_raw(path)
        time.sleep(0.1)
    assert again is not None, "the events socket takes connections again"
    again.close()
