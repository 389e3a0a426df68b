"""Issue 20's findings about the daemon itself, measured against real daemons: figure
before (from the issue), figure now.

    .venv/bin/python bench/abuse_daemon.py [--quick] [--only NAME]

 metrics   1,000 idle TCP connections to the metrics port under prlimit --nofile=1024:1024,
           then enroll and 50 control connections
 dupkey    the config template with a second `metrics:` section appended
 fileend   --source file: (4 s of speech): seconds from the file's end to the exit
 pause     --source stdin: speech, a 5 s pause with the pipe open, speech: is it named
 fast      --source stdin and stdin:live fed 33 s of speech at once, small buffers
 abandon   a `vggvox-client replay --realtime` killed mid-file: when `finished` comes
 cancel    an enrollment of 400 s of speech cancelled 0.3 s in: stored or not

Each starts its own daemon (tests/daemon_proc.py, ipc:// endpoints in a temp folder).
What needs speech uses ../shared/data's fixtures and is skipped, saying so, without.
"""

from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from abuse_common import (
    MAX_BYTES,
    NO_SPEECH,
    Row,
    main_alone,
    open_fds,
    short,
    speech_clips,
    threads,
)
from benchkit import (
    CLIENT,
    FIXTURES,
    ROOT,
    DaemonProcess,
    ask_status,
    dealer,
    idle,
    metrics_daemon,
    write_wav,
)

from vggvox.audio import load_audio, to_int16
from vggvox_client.connection import ClientError, Connection
from vggvox_client.enroll import enroll

CONVERSATION = FIXTURES / "stream_2spk.wav"


def daemon(tmp: Path, source: str | None = "stdin", config: str = "") -> DaemonProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(config)
    return DaemonProcess(tmp, source=source, args=["--config", str(cfg)])


def m_metrics(tmp: Path, quick: bool) -> list[Row]:
    attack = ("1,000 idle TCP connections to the metrics port, daemon under `prlimit "
              "--nofile=1024:1024`; then `enroll` and 50 control connections")
    before = ("1,022 files and 1,011 threads; `speakers`/`enroll` failed \"unable to open "
              "database file\"; 50 ZeroMQ connections aborted it (Too many open files, "
              "src/ipc_listener.cpp:297)")
    if not speech_clips():
        return [("20.1.3", attack, before, NO_SPEECH)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    tmp.mkdir(parents=True, exist_ok=True)
    d, port = metrics_daemon(tmp, files=1024)
    assert d.proc is not None
    pid = d.proc.pid
    held: list[socket.socket] = []
    clients: list[Any] = []
    try:
        fds0, threads0 = open_fds(pid), threads(pid)
        t0 = time.monotonic()
        held = idle(port, 1000)
        opened = time.monotonic() - t0
        time.sleep(0.5)
        fds, thr = open_fds(pid), threads(pid)
        try:
            r = enroll(d.conn, "ann", speech_clips(), None, False, MAX_BYTES)
            enrolled = f"enroll {r['action']}"
        except ClientError as e:
            enrolled = f"enroll FAILED: {short(str(e), 60)}"
        clients = [dealer(d.conn.control) for _ in range(50)]
        answered = sum(ask_status(c, 5) is not None for c in clients)
        alive = d.proc.poll() is None
    finally:
        for s in clients:
            s.close()
        for c in held:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        code, _ = d.stop()
    now = (f"1,000 connected in {opened:.1f} s; daemon files {fds0} → {fds}, threads "
           f"{threads0} → {thr}; {enrolled}; {answered} of 50 control connections answered; "
           f"daemon {'alive' if alive else 'DEAD'}, stopped with exit {code}")
    return [("20.1.3", attack, before, now)]


def m_dupkey(tmp: Path, quick: bool) -> list[Row]:
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "vggvoxd.yaml"
    f.write_text((ROOT / "config" / "vggvoxd.yaml").read_text()
                 + "\nmetrics:\n  listen: 127.0.0.1:9464\n")
    run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--config", str(f),
                          "--source", "stdin", "--store", str(tmp / "v.db"),
                          "--control", f"ipc://{tmp}/c.sock", "--events", f"ipc://{tmp}/e.sock"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).strip().splitlines()
    said = lines[0].replace(str(f), "FILE") if lines else "(nothing)"
    return [("20.1.8", "the config template with a second `metrics:` section appended",
             "accepted: PyYAML kept the last, so an edit to the first was silently ignored "
             "(the template itself had `sources`, `search`, `metrics` twice)",
             f"exit {run.returncode}, {len(lines)} line: \"{said}\"")]


def m_fileend(tmp: Path, quick: bool) -> list[Row]:
    attack = "`vggvoxd --source file:F` (4 s of speech): from the file's end to the exit"
    before = "stayed `finished` forever: never exited (`--help` promised it would)"
    if not CONVERSATION.exists():
        return [("20.2", attack, before, NO_SPEECH)]
    tmp.mkdir(parents=True, exist_ok=True)
    clip = write_wav(tmp / "four.wav", load_audio(CONVERSATION)[: 4 * 16000])
    took, codes = [], []
    for i in range(1 if quick else 3):
        d = daemon(tmp / str(i), f"file:{clip}", "status: {interval_s: 0.5}\n")
        sub = d.conn.subscribe(["status"])
        d.start(timeout=60)
        began = None
        try:
            while began is None:  # a heartbeat: its wall time less its stream time
                ev = d.conn.receive(sub, 5)
                if ev is None:
                    break
                if ev["state"] == "running":
                    began = ev["time"] - ev["t_end"]
            code, exited = d.wait_exit(30)
        finally:
            sub.close()
            d.stop()
        codes.append(code)
        if began is not None:
            took.append(exited - (began + 4.0))
    now = (f"exit status {'/'.join(str(c) for c in codes)} ({len(codes)} runs), at worst "
           f"{max(took):.2f} s after the file's end" if took
           else f"exit {codes}; no heartbeat seen")
    return [("20.2", attack, before, now)]


def pcm(x: np.ndarray) -> bytes:
    return to_int16(x).tobytes()


def final_turns(d: DaemonProcess, sub: Any, seconds: float) -> list[dict]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev = d.conn.receive(sub, 0.2)
        if ev is not None and ev["type"] == "turn" and ev["final"]:
            out.append(ev)
    return out


def m_pause(tmp: Path, quick: bool) -> list[Row]:
    attack = ("`--source stdin`: one speaker's turn, a 5 s pause with the pipe open, the "
              "other speaker's turn")
    before = ("after 3 s: `input stdin lost (no audio); will retry`, stdin never read again, "
              "the writer blocked for good; the second turn never named")
    if not CONVERSATION.exists():
        return [("20.2", attack, before, NO_SPEECH)]
    x = load_audio(CONVERSATION)
    d = daemon(tmp).start(timeout=60)
    try:
        for name in ("ls-3005", "ls-3331"):
            enroll(d.conn, name, speech_clips(name), None, False, MAX_BYTES)
        sub = d.conn.subscribe(["turn"])
        time.sleep(0.3)
        d.feed(pcm(x[: int(5.4 * 16000)]), close=False).join(10)
        first = final_turns(d, sub, 5.0)  # the pause
        d.feed(pcm(x[int(5.5 * 16000): int(10.9 * 16000)]), close=False).join(10)
        second = final_turns(d, sub, 5.0)
        state = d.conn.request("status")["sources"]["stdin"]["state"]
    finally:
        d.stop()
    lost = "lost" in d.output()
    now = (f"before the pause: {[e['speaker'] for e in first]}; after it: "
           f"{[e['speaker'] for e in second]} (truth ls-3005, then ls-3331); source "
           f"{state}; {'LOST logged' if lost else 'no loss logged'}")
    return [("20.2", attack, before, now)]


SMALL = "audio: {buffer_s: 5.0}\nwindow: {queue: 2, max_batch: 2}\nstatus: {interval_s: 0.5}\n"


def m_fast(tmp: Path, quick: bool) -> list[Row]:
    attack = ("stdin fed 33 s of speech at once (a 5 s ring buffer, 2 windows a queue): "
              "`--source stdin`, then `--source stdin:live`")
    before = "34 windows lost, a whole 9 s turn among them, nothing in the log"
    if not CONVERSATION.exists():
        return [("20.2", attack, before, NO_SPEECH)]
    x = load_audio(CONVERSATION)
    parts = []
    for uri in ("stdin", "stdin:live"):
        d = daemon(tmp / uri.replace(":", "_"), uri, SMALL)
        sub = d.conn.subscribe(["status", "speaker"])
        d.start(timeout=60)
        windows, finished = 0, None
        try:
            time.sleep(0.5)  # the subscription has reached the publisher
            t0 = time.monotonic()
            d.feed(pcm(np.concatenate([x, x])), close=True)
            while finished is None and time.monotonic() - t0 < 60:
                ev = d.conn.receive(sub, 0.5)
                if ev is None:
                    continue
                windows += ev["type"] == "speaker"
                if ev["type"] == "status" and ev["state"] == "finished":
                    finished = ev
            code, _ = d.wait_exit(10)
        finally:
            sub.close()
            d.stop()
        lines = re.findall(r"WARNING vggvoxd\.live: (stdin: dropped .*?) \(", d.output())
        dropped = finished["dropped_windows"] if finished else "?"
        parts.append(f"`{uri}`: {windows} windows decided, {dropped} dropped, exit {code}; "
                     f"{len(lines)} WARNING line(s)"
                     + (f": \"{short(lines[0], 80)}\"" if lines else ""))
    return [("20.2", attack, before, "; ".join(parts))]


def m_abandon(tmp: Path, quick: bool) -> list[Row]:
    attack = "`vggvox-client replay conv.wav --realtime` killed (SIGKILL) 3 s in"
    before = ("the session was reaped after 60 s with no `finished` event: the MQTT bridge "
              "kept its Home Assistant entities forever")
    if not CONVERSATION.exists():
        return [("20.1.5", attack, before, NO_SPEECH)]
    d = daemon(tmp).start(timeout=60)
    sub = d.conn.subscribe()
    time.sleep(0.3)
    client = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "replay", str(CONVERSATION), "--realtime"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished, after = None, 0
    try:
        time.sleep(3)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=5)
        killed = time.time()
        deadline = time.monotonic() + 30
        while finished is None and time.monotonic() < deadline:
            ev = d.conn.receive(sub, 0.2)
            if ev is not None and ev["source"].startswith("replay:") and \
                    ev["type"] == "status" and ev["state"] == "finished":
                finished = ev
        if finished is not None:
            end = time.monotonic() + 2
            while time.monotonic() < end:
                ev = d.conn.receive(sub, 0.2)
                after += ev is not None and ev["source"] == finished["source"]
    finally:
        client.kill()
        sub.close()
        d.stop()
    if finished is None:
        return [("20.1.5", attack, before, "NO finished event within 30 s")]
    now = (f"`finished` with `abandoned: {str(finished['abandoned']).lower()}` "
           f"{finished['time'] - killed:.1f} s after the kill; {after} events of it after")
    return [("20.1.5", attack, before, now)]


def m_cancel(tmp: Path, quick: bool) -> list[Row]:
    attack = "`enroll` of 400 s of speech (40 clips) with a `request` id, `cancel` 0.3 s in"
    before = "Ctrl-C on `vggvox-client enroll` exited 130, but the speaker was enrolled anyway"
    if not speech_clips():
        return [("20.2", attack, before, NO_SPEECH)]
    import msgpack
    import zmq

    x = np.concatenate([load_audio(p) for p in speech_clips()])
    x = np.tile(x, int(400 * 16000 / len(x)) + 1)[: 400 * 16000]
    d = daemon(tmp, config="enroll: {max_audio_s: 400.0}\n").start(timeout=60)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(d.conn.control)
    try:
        sock.send_multipart([b"", msgpack.packb({"op": "enroll", "name": "long", "request":
                                                 "bench-cancel-1", "audio": [
                                                     pcm(c) for c in np.array_split(x, 40)]})])
        time.sleep(0.3)
        t0 = time.monotonic()
        answer = Connection(d.conn.control, d.conn.events).request(
            "cancel", request="bench-cancel-1")
        got = msgpack.unpackb(sock.recv_multipart()[-1]) if sock.poll(10000) else {}
        took = time.monotonic() - t0
        stored = [s["name"] for s in d.conn.request("list")["speakers"]]
    finally:
        sock.close()
        d.stop()
    now = (f"cancel: `{answer['state']}`; the enrollment answered in {took:.2f} s: "
           f"code `{got.get('code')}`; stored after: {stored or 'nobody'}")
    return [("20.2", attack, before, now)]


MEASUREMENTS = {"metrics": m_metrics, "dupkey": m_dupkey, "fileend": m_fileend,
                "pause": m_pause, "fast": m_fast, "abandon": m_abandon, "cancel": m_cancel}


def main() -> int:
    return main_alone(MEASUREMENTS, __doc__ or "", "fewer repetitions")


if __name__ == "__main__":
    sys.exit(main())
