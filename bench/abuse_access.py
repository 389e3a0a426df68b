"""Measurements of access: CURVE keys, exposure, replay tokens (issue 8, section 4)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml
import zmq
from abuse_common import (
    MAX_BYTES,
    Row,
    exit_text,
    running,
    short,
    speech_clips,
    timed,
)
from benchkit import ROOT, DaemonProcess, free_port

from vggvox_client.connection import Connection
from vggvox_client.enroll import enroll


def m_access(tmp: Path, quick: bool) -> list[Row]:
    """9: a CURVE daemon on tcp://127.0.0.1: what a reader, an admin, an unknown key and
    no key get; and tcp://0.0.0.0 without keys."""
    rows: list[Row] = []
    before = "any local user could list, enroll, remove and subscribe (no authentication)"
    tmp.mkdir(parents=True)
    keys = tmp / "keys"
    client = [str(ROOT / ".venv/bin/vggvox-client")]
    if not Path(client[0]).exists():
        client = [sys.executable, "-m", "vggvox_client.cli"]
    for folder, name in ((keys, "vggvoxd"), (keys / "admins", "alice"),
                         (keys / "readers", "ruth"), (keys / "strangers", "mallory")):
        subprocess.run([*client, "keygen", str(folder), name], check=True, timeout=60,
                       capture_output=True)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "readers": str(keys / "readers")},
        "status": {"interval_s": 0.3}}))
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(tmp, args=["--config", str(cfg), "--events", events,
                                 "--control", control])

    def as_(key: Path | None, timeout: float) -> Connection:
        server = keys / "vggvoxd.key" if key else None
        return Connection(control, events, timeout, server, key)

    admin = as_(keys / "admins/alice.key_secret", 60)
    d.conn = admin
    d.start(timeout=60)
    who = {"reader": as_(keys / "readers/ruth.key_secret", 5),
           "admin": admin,
           "unknown key": as_(keys / "strangers/mallory.key_secret", 1.5),
           "no key": as_(None, 1.5)}
    results: dict[str, list[str]] = {}
    try:
        subs = {k: c.subscribe(["status"]) for k, c in who.items()}
        time.sleep(0.3)
        counts = dict.fromkeys(who, 0)
        poller = zmq.Poller()
        for s in subs.values():
            poller.register(s, zmq.POLLIN)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            for s, _ in poller.poll(100):
                s.recv_multipart()
                counts[next(k for k, v in subs.items() if v is s)] += 1
        for s in subs.values():
            s.close()
        victim = bool(speech_clips())
        if victim:
            enroll(admin, "victim", speech_clips(), None, False, MAX_BYTES)
        for k in ("unknown key", "no key", "reader", "admin"):  # the admin last: it removes
            conn = who[k]
            r, _, err = timed(conn, "status", timeout=conn.timeout)
            status = "answered" if r else ("no answer" if "no answer" in err else short(err, 50))
            r, _, err = timed(conn, "list", timeout=conn.timeout)
            listed = (f"{len(r['speakers'])} speaker(s)" if r else
                      "no answer" if "no answer" in err else short(err, 50))
            if k == "admin" and not victim:  # nobody to remove: enroll is the proof
                r, _, err = timed(conn, "enroll", timeout=conn.timeout, name="mallory",
                                  audio=[b"\0\0"])
                op = "enroll"
            else:
                r, _, err = timed(conn, "remove", timeout=conn.timeout, name="victim")
                op = "remove victim"
            if r:
                changed = f"{op}: done"
            elif "no answer" in err:
                changed = f"{op}: no answer"
            else:
                changed = f"{op}: \"{short(err.split(': ', 1)[-1], 60)}\""
            results[k] = [f"status {status}", f"list {listed}", changed,
                          f"{counts[k]} events in 2 s"]
        unknown_logged = "refused a client with an unknown key" in d.output()
    finally:
        code, _ = d.stop()
    rows.append(("9", "CURVE daemon on tcp://127.0.0.1 (status every 0.3 s): reader, admin, "
                 "unknown key, no key", before,
                 "; ".join(f"**{k}**: {', '.join(v)}" for k, v in results.items())
                 + f"; unknown key logged: {'yes' if unknown_logged else 'no'}; "
                 f"daemon stopped with {exit_text(code)}"))
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "vggvoxd.main", "--events", f"tcp://0.0.0.0:{free_port()}",
         "--control", f"ipc://{tmp}/c.sock", "--store", str(tmp / "v.db"), "--source", "stdin"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    lines = run.stderr.strip().splitlines()
    rows.append(("9", "`--events tcp://0.0.0.0:PORT` without keys", "bound silently",
                 f"{exit_text(run.returncode)} after {took:.1f} s, {len(lines)} line(s): "
                 f"\"{short(lines[-1] if lines else '(nothing)', 110)}\""))
    return rows


def m_replay(tmp: Path, quick: bool) -> list[Row]:
    """10: a replay session open; does `status` show its token?"""
    attack = "a replay session open (32-character token); `status` from another client"
    before = "`status` listed the session names: anyone could push into or end them"
    token = secrets.token_hex(16)
    with running(tmp) as d:
        d.conn.request("replay", session=token, label="mine", audio=bytes(32000), final=False)
        status = d.conn.request("status")
        shown = token in str(status)
        replays = status.get("replays")
        guess, _, err = timed(d.conn, "replay", session="guessable", audio=b"")
        d.conn.request("replay", session=token, label="mine", audio=b"", final=True)
    now = (f"token in status: {'YES' if shown else 'no'}; `replays` = {replays!r}; "
           f"a 9-character session: "
           + ("ACCEPTED" if guess else f"refused (\"{short(err.split(': ', 1)[-1], 60)}\")"))
    return [("10", attack, before, now)]


