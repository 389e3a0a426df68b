"""Issue 20's attacks on the web bridge (part 1, items 1, 2 and 4), measured against a
real daemon and a real ``vggvox-client web`` process: figure before (the issue's),
figure now.

    .venv/bin/python bench/abuse_web.py [--quick] [--only NAME]

 csrf      the issue's curl with an evil Origin; a page of another origin in a real
           Chromium POSTing a voice (fetch no-cors and a form), same-site and cross-site
 rebind    DNS rebinding: Host: evil.example on /speakers and /events
 local     the local user nobody (runuser; needs root) on every path
 bombs     the 2 h FLAC, the 8 Hz WAV, a FLAC whose header hides its length, three at once;
           then on a fresh bridge a 1024-channel WAV (one, two at once) and an M4A whose
           sample table asks FFmpeg for a big index: time to the refusal and the bridge's
           peak RSS (VmHWM)
 streams   420 event streams under a 1,024-file limit: answers, the page's time meanwhile,
           tracebacks
 slow      100 slow uploads and 100 clients dripping their headers: threads, answers

Each starts its own daemon (``tests/daemon_proc.py``) and bridge (``tests/test_web.py``'s
``start_web``: the bridge's runtime folder, and so its generated token, in the temp folder).
The enrollments need speech: the fixtures' clips, else espeak-ng voices.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

import soundfile as sf
from abuse_common import Row, main_alone, ms, open_fds, proc_status, running, short, threads
from benchkit import (
    ATTACK,
    Bridge,
    DaemonProcess,
    QuietHandler,
    chromium,
    conversation,
    encode_with_pyav,
    fetch,
    free_port,
    many_channels,
    many_samples_m4a,
    paging,
    request,
    start_web,
    status_of,
    stop_web,
    tone,
    two_hours_of_flac,
)

CURL = shutil.which("curl") or "curl"


def curl(*args: str, user: str | None = None, data: bytes = b"") -> tuple[int, str]:
    """(status, body) of one real curl, run as ``user`` when given (runuser)."""
    wrap = ["runuser", "-u", user, "--"] if user else []
    out = subprocess.run([*wrap, CURL, "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}",
                          *args], input=data, capture_output=True, timeout=30)
    body, _, code = out.stdout.decode(errors="replace").rpartition("\n")
    return int(code or 0), body


def said(code: int, body: str) -> str:
    return f"{code} {short(body, 110)}"


def names(d: DaemonProcess) -> list[str]:
    return [s["name"] for s in d.conn.request("list")["speakers"]]


def bridge(tmp: Path, **kw: object) -> tuple[DaemonProcess, Bridge]:
    tmp.mkdir(parents=True, exist_ok=True)
    d = DaemonProcess(tmp).start(timeout=60)
    return d, start_web(d, free_port(), **kw)  # type: ignore[arg-type]


def m_web_csrf(tmp: Path, quick: bool) -> list[Row]:
    """20.1.1: the issue's curl; a page of another origin in Chromium."""
    convo = conversation(tmp)
    clip = convo.enroll[sorted(convo.enroll)[0]][0]
    with running(tmp / "d") as d:
        web = start_web(d, free_port())
        try:
            cmd = ("-X", "POST", "-H", "Origin: http://evil.example", "-H",
                   "Content-Type: text/plain", "--data-binary", f"@{clip}",
                   f"{web.url}/enroll?name=victim")
            plain = curl(*cmd)
            carried = curl("-H", f"Cookie: {web.cookie()}", *cmd)  # as the victim's browser
            rows = [("20.1.1", "CSRF: `curl -X POST -H 'Origin: http://evil.example' -H "
                     "'Content-Type: text/plain' --data-binary @voice.wav "
                     "'http://127.0.0.1:8765/enroll?name=victim'`",
                     '{"ok": true, "action": "added"}',
                     f"{said(*plain)}; with the page's cookie: {said(*carried)}; "
                     f"enrolled: {names(d)}")]
            rows.append(("20.1.1", "CSRF: a page on another origin, in a real Chromium that "
                         "has the page's cookie, POSTs a voice (fetch no-cors, then a form)",
                         "enrolled", chromium_attack(tmp, d, web, clip)))
        finally:
            stop_web(web)
    return rows


def chromium_attack(tmp: Path, d: DaemonProcess, web: Bridge, clip: Path) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    site = tmp / "site"
    site.mkdir()
    shutil.copy(clip, site / "voice.wav")
    (site / "attack.html").write_text(ATTACK.format(bridge=web.url))
    attacker = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                   partial(QuietHandler, directory=str(site)))
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    browser = chromium(tmp)
    shown = []
    try:
        browser.get(f"{web.url}/?token={web.token}")
        for where, host in (("same-site", "127.0.0.1"), ("cross-site", "localhost")):
            browser.get(f"http://{host}:{attacker.server_port}/attack.html")
            WebDriverWait(browser, 20).until(lambda b: b.current_url.startswith(web.url))
            WebDriverWait(browser, 20).until(lambda b: "refused" in b.page_source
                                             or "needs its token" in b.page_source)
            text = browser.find_element("tag name", "body").text
            shown.append(f"{where}: the form got \"{short(text, 90)}\"")
    finally:
        browser.quit()
        attacker.shutdown()
    reached = QuietHandler.seen.count("/report?fetch=answered")
    return (f"{'; '.join(shown)}; the fetch reached the bridge {reached} times; "
            f"enrolled: {names(d)}")


def m_web_rebind(tmp: Path, quick: bool) -> list[Row]:
    """20.1.1: DNS rebinding, with the right token even."""
    d, web = bridge(tmp)
    try:
        host = ("-H", f"Host: evil.example:{web.port}", "-H", f"Cookie: {web.cookie()}")
        speakers = curl(*host, web.url + "/speakers")
        events = curl(*host, web.url + "/events")
    finally:
        stop_web(web)
        d.stop()
    return [("20.1.1", "DNS rebinding: `curl -H 'Host: evil.example:8765' "
             "http://127.0.0.1:8765/speakers` (and /events)",
             "200, every name and last_heard; /events streamed the turns",
             f"/speakers {said(*speakers)}; /events {said(*events)}")]


def m_web_local(tmp: Path, quick: bool) -> list[Row]:
    """20.1.1: a local user who may not use the control socket."""
    attack = "the local user nobody, who gets EACCES on the control socket, uses the page"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return [("20.1.1", attack, "enrolled", "skipped: needs root and runuser")]
    convo = conversation(tmp)
    clip = convo.enroll[sorted(convo.enroll)[0]][0].read_bytes()
    d, web = bridge(tmp)
    try:
        got = {p: curl(web.url + p, user="nobody")[0] for p in ("/", "/state", "/speakers",
                                                               "/events")}
        got["POST /enroll"] = curl("-H", f"Origin: {web.url}", "--data-binary", "@-",
                                   f"{web.url}/enroll?name=victim", user="nobody",
                                   data=clip)[0]
        # With the token (a cookie reaches every port of the host) and the CSRF value.
        stolen = curl("-H", f"Cookie: {web.cookie()}", "-H", f"Origin: {web.url}", "-H",
                      f"X-CSRF-Token: {web.csrf}", "--data-binary", "@-",
                      f"{web.url}/enroll?name=victim", user="nobody", data=clip)
        enrolled = names(d)
    finally:
        stop_web(web)
        d.stop()
    return [("20.1.1", attack, "enrolled through the page",
             ", ".join(f"{k} {v}" for k, v in got.items()) + "; with the token and the "
             f"CSRF value: {said(*stolen)}; enrolled: {enrolled}")]


def m_web_bombs(tmp: Path, quick: bool) -> list[Row]:
    """20.1.2: decompression bombs: the time to the refusal and the bridge's peak RSS."""
    tmp.mkdir(parents=True)
    eight = tmp / "8hz.wav"
    sf.write(str(eight), tone(8, 1875.0, 1.0), 8, subtype="PCM_16")
    flac = two_hours_of_flac(tmp / "2h.flac")
    liar = bytearray(flac.read_bytes())
    liar[21] &= 0xF0  # STREAMINFO's sample count: "unknown"
    liar[22:26] = bytes(4)
    d, web = bridge(tmp / "d")
    pid = web.proc.pid

    def post(data: bytes) -> tuple[int, str, float]:
        t0 = time.perf_counter()
        code, body, _ = fetch(f"{web.url}/enroll?name=bomb", data=data, Cookie=web.cookie(),
                              Origin=web.url, X_CSRF_Token=web.csrf)
        return code, body.decode(errors="replace"), time.perf_counter() - t0

    rows: list[Row] = []
    try:
        fetch(web.url + "/state", Cookie=web.cookie())
        start = proc_status(pid, "VmHWM")
        for what, data, before in (
                (f"a {len(flac.read_bytes()) >> 10} KB FLAC holding 2 h", flac.read_bytes(),
                 "106 MB -> 1.46 GB"),
                (f"a {eight.stat().st_size >> 10} KB WAV declaring 8 Hz", eight.read_bytes(),
                 "811 MB"),
                ("the 2 h FLAC with its length cut from the header (decoding must stop)",
                 bytes(liar), "(not tried)")):
            code, body, took = post(data)
            rows.append(("20.1.2", f"upload bomb: {what}", before,
                         f"{code} in {ms(took)} ({short(body, 80)}); bridge peak RSS "
                         f"{proc_status(pid, 'VmHWM'):.0f} MB (at start {start:.0f} MB)"))
        with ThreadPoolExecutor(3) as pool:
            three = list(pool.map(post, [flac.read_bytes()] * 3))
        rows.append(("20.1.2", "upload bomb: three 2 h FLACs at once", "3.9 GB",
                     ", ".join(f"{c} in {ms(t)}" for c, _, t in three) +
                     f" (at most 2 uploads at once: a third is 503 busy); bridge peak RSS "
                     f"{proc_status(pid, 'VmHWM'):.0f} MB"))
        stop_web(web)
        web = start_web(d, free_port())  # a fresh peak for the review's bombs
        rows += wide_and_indexed(tmp, web, post)
    finally:
        stop_web(web)
        d.stop()
    return rows


def wide_and_indexed(tmp: Path, web: Bridge,
                     post: Callable[[bytes], tuple[int, str, float]]) -> list[Row]:
    """The review of issue 20: a WAV of 1024 channels (each block was 65,536 frames of
    every channel), and an M4A whose 7 million 1-byte samples FFmpeg indexes in av.open
    (before any bound), each on the bridge started just before."""
    wide = many_channels(tmp / "wide.wav", 1024, 3.87).read_bytes()
    good = encode_with_pyav(tone(16000, 2.0, 300.0), tmp / "good.m4a", "aac")
    index = many_samples_m4a(good, tmp / "index.m4a", 7_000_000).read_bytes()
    pid = web.proc.pid
    fetch(web.url + "/state", Cookie=web.cookie())
    post(good.read_bytes())  # PyAV and FFmpeg's libraries loaded (~20 MB), not counted
    start = proc_status(pid, "VmHWM")
    rows: list[Row] = []
    for what, data, before in (
            (f"a {len(wide) / 1e6:.1f} MB WAV of 1024 channels (PCM_U8, 3.9 s)", wide,
             "+123 MB in one decode"),
            (f"a {len(index) / 1e6:.0f} MB M4A that says 3 s and lists 7 million 1-byte "
             "samples (FFmpeg's index, built in av.open)", index,
             "+105 MB inside av.open, before any bound")):
        code, body, took = post(data)
        rows.append(("review", f"upload bomb: {what}", before,
                     f"{code} in {ms(took)} ({short(body, 80)}); bridge peak RSS "
                     f"{proc_status(pid, 'VmHWM'):.0f} MB (at start {start:.0f} MB)"))
    with ThreadPoolExecutor(2) as pool:
        two = list(pool.map(post, [wide] * 2))
    rows.append(("review", "upload bomb: two 1024-channel WAVs at once", "+228 MB",
                 ", ".join(f"{c} in {ms(t)}" for c, _, t in two) +
                 f"; bridge peak RSS {proc_status(pid, 'VmHWM'):.0f} MB (at start "
                 f"{start:.0f} MB)"))
    # What the cap leaves: tables just under 8 MB each (measured last: the peak only grows).
    under = many_samples_m4a(good, tmp / "under.m4a", 1_900_000).read_bytes()
    code, body, took = post(under)
    rows.append(("review", f"what stays: a {len(under) / 1e6:.1f} MB M4A of 1.9 million "
                 "1-byte samples, just under the cap", "",
                 f"{code} in {ms(took)} ({short(body, 60)}); bridge peak RSS "
                 f"{proc_status(pid, 'VmHWM'):.0f} MB (at start {start:.0f} MB)"))
    return rows


def m_web_streams(tmp: Path, quick: bool) -> list[Row]:
    """20.1.4: 420 event streams against a bridge under a 1,024-file limit."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return [("20.1.4", "420 event streams", "", "skipped: prlimit is needed")]
    d, web = bridge(tmp, wrap=[prlimit, "--nofile=1024:1024", "--"])
    held: list[socket.socket] = []
    try:
        with paging(web) as page:
            t0 = time.perf_counter()
            held = [request(web, "/events") for _ in range(420)]
            codes = [status_of(s) for s in held]
            opened = time.perf_counter() - t0
            time.sleep(1.0)
            fds, count = open_fds(web.proc.pid), threads(web.proc.pid)
    finally:
        for s in held:
            s.close()
        out = stop_web(web)
        d.stop()
    return [("20.1.4", "420 event streams held (raw sockets), bridge under `prlimit "
             "--nofile=1024:1024`; the page fetched every 50 ms meanwhile",
             "ZMQError: Too many open files tracebacks; a thread, ~3 files and a daemon "
             "connection per stream; listen backlog 5",
             f"{codes.count(200)} streams served, {codes.count(503)} answered 503 at once, "
             f"{codes.count(0)} reset before their 503 ({ms(opened)} for all 420); page "
             f"served {len(page)} times, median {ms(statistics.median(page))}, max "
             f"{ms(max(page))}; bridge {fds} files, {count} threads; tracebacks in its "
             f"output: {out.count('Traceback')}, 'Too many open files': "
             f"{out.count('Too many open files')}")]


def m_web_slow(tmp: Path, quick: bool) -> list[Row]:
    """20.1.2: 100 slow uploads (with the token), then 100 clients dripping headers."""
    d, web = bridge(tmp)
    pid = web.proc.pid
    rows: list[Row] = []
    try:
        t0 = time.perf_counter()
        slow = [request(web, "/enroll?name=x", "POST", 1 << 20, b"RIFF") for _ in range(100)]
        sent = time.perf_counter() - t0
        answered: dict[socket.socket, int] = {}
        while time.perf_counter() - t0 < sent + 2.0:  # what answers at once: the busy ones
            ready, _, _ = select.select([s for s in slow if s not in answered], [], [], 0.1)
            answered |= {s: status_of(s) for s in ready}
        busy = sum(code == 503 for code in answered.values())
        count = threads(pid)
        page = fetch(web.url + "/", Cookie=web.cookie())[0]
        held = [s for s in slow if s not in answered]
        cut = "not waited for (--quick)"
        if not quick:
            t1 = time.perf_counter()
            codes = [status_of(s, 90) for s in held]
            cut = f"answered {codes} {time.perf_counter() - t1:.0f} s later"
        rows.append(("20.1.2", "100 slow uploads at once (token and origin right, 4 bytes of "
                     "a 1 MB body sent, then nothing)",
                     "100 threads held for the uploads' whole duration",
                     f"{busy} answered 503 at once (all 100 sent in {ms(sent)}); bridge threads "
                     f"{count}; page {page}; the {len(held)} being read: {cut} (10 s without "
                     "a byte; a trickle is cut at 60 s)"))
        for s in slow:
            s.close()
        drips = [socket.create_connection(("127.0.0.1", web.port)) for _ in range(100)]
        t0 = time.perf_counter()
        for s in drips:
            try:
                s.send(b"GET / HTTP/1.1\r\n")
            except OSError:
                pass
        time.sleep(1.0)
        count = threads(pid)
        refused = sum(status_of(s, 0.2) == 503 for s in drips)
        closed_by = "not waited for (--quick)"
        if not quick:
            for s in drips:
                s.settimeout(15)
                try:
                    s.recv(10)
                except OSError:
                    pass
            closed_by = f"all closed {time.perf_counter() - t0:.1f} s after their first line"
        rows.append(("20.1.2", "100 clients sending their headers slowly (slowloris)",
                     "a thread each, no time-out", f"bridge threads {count}; {refused} past "
                     f"the 64 connections answered 503 at once; {closed_by}"))
        for s in drips:
            s.close()
    finally:
        out = stop_web(web)
        d.stop()
    if "Traceback" in out:
        rows.append(("20.1.2", "the bridge's output", "", short(out, 200)))
    return rows


MEASUREMENTS = {"csrf": m_web_csrf, "rebind": m_web_rebind, "local": m_web_local,
                "bombs": m_web_bombs, "streams": m_web_streams, "slow": m_web_slow}


def main() -> int:
    return main_alone(MEASUREMENTS, __doc__ or "", "do not wait out time-outs")


if __name__ == "__main__":
    sys.exit(main())
