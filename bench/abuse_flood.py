"""Connection floods against the daemon, at and past its open-files limit
(issue 8, section 2)."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

from abuse_common import (
    Row,
    exit_text,
    ms,
    open_fds,
    short,
    timed,
)
from benchkit import DaemonProcess


def m_flood(tmp: Path, quick: bool) -> list[Row]:
    """3: 3,000 raw AF_UNIX connections opened and held, then closed, against a daemon
    started with a soft limit of 1,024 open files (as the issue's); then once more with
    the hard limit at 1,024 too, which the daemon cannot raise (README: a known limit)."""
    return [flood(tmp / "soft", "-Sn", 30), flood(tmp / "hard", "-n", 10 if quick else 20)]


def status_within(d: DaemonProcess, seconds: float = 10.0) -> tuple[float | None, int]:
    """Ask for status until it answers (a shedding daemon is unbound for a while):
    (seconds until the answer or None, failed attempts)."""
    t0, failed = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        left = seconds - (time.monotonic() - t0)
        if timed(d.conn, "status", timeout=max(0.1, min(left, 5.0)))[0] is not None:
            return time.monotonic() - t0, failed
        failed += 1
        if d.proc is not None and d.proc.poll() is not None:
            return None, failed
        time.sleep(0.1)
    return None, failed


def answer_text(got: tuple[float | None, int]) -> str:
    took, failed = got
    if took is None:
        return "NO ANSWER within 10 s"
    return ms(took) + (f" ({failed} refused attempts first)" if failed else "")


def flood(tmp: Path, ulimit: str, seconds: float) -> Row:
    want = 3000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want + 200:  # this process holds them all
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        except (ValueError, OSError):
            pass
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        want = min(want, soft - 200)
    attack = (f"{want:,} raw AF_UNIX connections to the control socket, held, then closed "
              f"(daemon started under `ulimit {ulimit} 1024`"
              + (": soft and hard limit, which it cannot raise)" if ulimit == "-n" else ")"))
    before = "~1,100 connections killed it (SIGABRT, libzmq \"Too many open files\") in < 1 s"
    tmp.mkdir(parents=True)
    d = DaemonProcess(tmp)
    d.argv = ["bash", "-c", f'ulimit {ulimit} 1024 && exec "$0" "$@"', *d.argv]
    d.start(timeout=60)
    assert d.proc is not None
    pid = d.proc.pid  # bash exec'd the daemon: the same process
    path = d.conn.control[len("ipc://"):]
    held: list[socket.socket] = []
    peak_fds, during, refused, backlog = open_fds(pid), [], 0, 0
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
        nofile = next(line.split()[3] for line in limits.splitlines()
                      if line.startswith("Max open files"))
        t0 = time.monotonic()
        # Connect until `want` are held; a refusal (the daemon unbound to shed a flood)
        # is counted and retried. Bounded: `seconds`, or 100,000 failed attempts.
        while (len(held) < want and time.monotonic() - t0 < seconds
               and refused + backlog < 100_000 and d.proc.poll() is None):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(path)
            except BlockingIOError:  # the listen backlog is full: let the daemon accept
                s.close()
                backlog += 1
                time.sleep(0.01)
                continue
            except OSError:  # refused, or no socket file: unbound for now, or dead
                s.close()
                refused += 1
                time.sleep(0.01)
                continue
            held.append(s)
            if len(held) % 1000 == 0 and len(held) < want:
                during.append(status_within(d))
                peak_fds = max(peak_fds, open_fds(pid))
            elif len(held) % 100 == 0:
                peak_fds = max(peak_fds, open_fds(pid))
        opened_s = time.monotonic() - t0
        end = time.monotonic() + 1.0
        while time.monotonic() < end:  # let it accept the last ones
            peak_fds = max(peak_fds, open_fds(pid))
            time.sleep(0.1)
        during.append(status_within(d))
        alive_held = d.proc.poll() is None
        for s in held:
            s.close()
        n_held = len(held)
        held.clear()
        time.sleep(0.5)
        after = status_within(d)
        alive_after = d.proc.poll() is None
        fds_after = open_fds(pid)
    finally:
        for s in held:
            s.close()
        code, _ = d.stop()
    answered = [x for x in during if x[0] is not None]
    slowest = max(answered, key=lambda x: x[0] or 0.0) if answered else (None, 0)
    now = (f"{n_held:,} connected in {opened_s:.1f} s ({refused:,} refused, {backlog:,} "
           "backlog-full retries)"
           + f"; daemon {'alive' if alive_held else 'DEAD (' + exit_text(d.proc.returncode) + ')'}"
           f" while held, {'alive' if alive_after else 'DEAD'} after; status answered "
           f"{len(answered)} of {len(during)} times while held (slowest {answer_text(slowest)})"
           f", after closing: {answer_text(after)}"
           f"; its open fds at peak {peak_fds:,} (soft limit raised from 1024 to {nofile}), "
           f"after {fds_after}; stopped with {exit_text(code)}")
    log = d.output().splitlines()
    warned = [line for line in log if "WARNING" in line or "ERROR" in line or "Too many" in line]
    shed = [line for line in warned if "cap" in line]
    for line in (warned[:1] + shed[:1]) if warned[:1] != shed[:1] else shed[:1]:
        now += f"; its log: \"{short(line, 110)}\""
    return ("3", attack, before, now)
