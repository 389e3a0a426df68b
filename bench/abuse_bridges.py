"""Issue 20's findings about the processes around the daemon, measured: the MQTT
bridge through a broker outage and an abandoned replay, ``watch`` with markup in
names, and the client's commands piped into ``head -1``.

    .venv/bin/python bench/abuse_bridges.py [--quick] [--only NAME]

Each measurement runs real processes (daemon, bridge, Mosquitto, tmux, head)
through the tests' helpers, and returns rows of (item, attack, figure before,
figure now) for ``bench_abuse.py``'s table:

  mqtt_outage  a 48 s outage between the bridge and the broker, twice: the link cut
               and refused (a broker restart), then stalled (bytes held, let through
               at the end: a frozen broker or a partition that heals); turn messages
               older than 5 s that reach a subscriber after it (--quick: 12 s)
  abandoned    a `replay --realtime` SIGKILLed mid-file: seconds until its Home
               Assistant entities (retained discovery configs) are removed
  watch_markup `watch` in tmux while speakers named '[bold]' and '[link=...]x' and a
               replay labelled '[/x]' are on it: its exit status when q is pressed
  pipes        listen, speakers, status and replay into `| head -1`: exit status and
               what stderr says
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from abuse_common import Row, main_alone, running, short
from benchkit import (
    CLIENT,
    abandoned_entities_gone_s,
    conversation,
    into_head,
    run_outage,
    wait_pane,
)

from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

PIPES = ("listen", "speakers", "status", "replay")


def m_mqtt_outage(tmp: Path, quick: bool) -> list[Row]:
    seconds = 12.0 if quick else 48.0
    rows: list[Row] = []
    for mode, attack, before in (
            ("refuse", f"MQTT: the bridge's broker link cut and refused for {seconds:g} s "
                       "while a speaker talks (a broker restart)",
             "97 turn messages queued and sent after the fresh state, the oldest 60 s old "
             "(722114e's bridge through this bench, 48 s: 101, oldest 61.1 s)"),
            ("stall", f"MQTT: the bridge's broker link stalled for {seconds:g} s, its bytes "
                      "held, then let through (a frozen broker, a partition that heals)",
             "(722114e's bridge through this bench, 48 s) 79 turn messages older than 5 s, "
             "oldest 48.6 s")):
        (tmp / mode).mkdir(parents=True, exist_ok=True)
        out = run_outage(tmp / mode, mode, seconds)
        rows.append(("20.1.5", attack, before,
                     f"{out.stale} turn messages older than 5 s reached the subscriber "
                     f"(oldest {out.oldest_s:.1f} s; {out.after} in the 8 s after); state "
                     f"republished {out.back_s:.1f} s after the link was back"))
    return rows


def m_abandoned(tmp: Path, quick: bool) -> list[Row]:
    tmp.mkdir(parents=True, exist_ok=True)
    took = abandoned_entities_gone_s(tmp, limit_s=60.0)
    now = (f"entities removed {took:.1f} s after the kill" if took is not None
           else "entities still there 60 s after the kill")
    return [("20.1.5", "MQTT: `vggvox-client replay --realtime` SIGKILLed mid-file",
             "never removed (no finished event; reaped after 60 s)", now)]


def m_watch_markup(tmp: Path, quick: bool) -> list[Row]:
    attack = ("`watch` in tmux; speakers enrolled as '[bold]' and '[link=https://evil."
              "example]x', a replay labelled '[/x]'")
    tmp.mkdir(parents=True, exist_ok=True)
    convo = conversation(tmp)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    names = ("[bold]", "[link=https://evil.example]x")
    session = f"abuse-watch-{os.getpid()}"
    with running(tmp, args=["--config", str(cfg)]) as d:
        for shown, files in zip(names, convo.enroll.values(), strict=True):
            enroll(d.conn, shown, files, None, False, 16 << 20)
        cmd = (f"env -u COLUMNS -u LINES {CLIENT} --control {d.conn.control} --events "
               f"{d.conn.events} watch 2> {tmp}/err; echo $? > {tmp}/status")
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "40",
                        cmd], check=True, timeout=10, stdin=subprocess.DEVNULL)
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "200", "-y", "40"],
                       check=True, timeout=10)
        try:
            wait_pane(session, *names)
            replay_one(d.conn, convo.stream, False, True, timeout=120, echo=False,
                       label="[/x]")
            try:
                wait_pane(session, "replay:[/x]-", *names, timeout=20)
                shown = "yes"
            except AssertionError:  # not on screen: say so in the row
                shown = "no"
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True, timeout=10)
            deadline = time.monotonic() + 10
            while not (tmp / "status").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    status = (tmp / "status").read_text().strip() if (tmp / "status").exists() else "none"
    err = (tmp / "err").read_text()
    now = (f"exit {status} on q; '[/x]', '[bold]' and the link shown as written: {shown}; "
           f"stderr: {short(err, 60) or 'empty'}")
    return [("20.1.6", attack, "MarkupError, exit 1, in every open view", now)]


def m_pipes(tmp: Path, quick: bool) -> list[Row]:
    tmp.mkdir(parents=True, exist_ok=True)
    convo = conversation(tmp)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.3}}))
    rows: list[Row] = []
    with running(tmp, args=["--config", str(cfg)]) as d:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, 16 << 20)
        at = ["--control", d.conn.control, "--events", d.conn.events]
        for cmd in PIPES:
            argv = {"listen": ["listen", "--seconds", "10"],
                    "replay": ["replay", str(convo.stream)]}.get(cmd, [cmd])
            code, err, _ = into_head([*argv, *at])
            said = "a traceback" if "Traceback" in err else short(err, 60) or "nothing"
            rows.append(("20.2", f"`vggvox-client {cmd}{' f' if cmd == 'replay' else ''}` "
                                 "piped into `head -1`",
                         "BrokenPipeError traceback, exit 1" if cmd != "status" else
                         "(not in the issue)",
                         f"exit {code}; stderr: {said}"))
    return rows


MEASUREMENTS: dict[str, Callable[[Path, bool], list[Row]]] = {
    "mqtt_outage": m_mqtt_outage, "abandoned": m_abandoned, "watch_markup": m_watch_markup,
    "pipes": m_pipes}


def main() -> int:
    return main_alone(MEASUREMENTS, __doc__ or "", "a 12 s outage, not 48 s")


if __name__ == "__main__":
    sys.exit(main())
