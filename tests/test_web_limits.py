"""The web bridge under abuse: upload bombs, caps on connections, event streams and
uploads, slow clients, and 420 event streams under a 1,024-file limit.

Real daemon, real bridge process, real sockets, a real file limit (``prlimit``)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from daemon_proc import DaemonProcess, free_port
from speakers_fixture import conversation
from test_audio import encode_with_pyav, no_decoder_m4a, tone, two_hours_of_flac
from test_web import Bridge, fetch, start_web, stop_web

from vggvox.audio import load_audio

PRLIMIT = shutil.which("prlimit")


def vm(pid: int, key: str) -> float:
    """A /proc/PID/status figure (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} for {pid}")


def request(web: Bridge, path: str, method: str = "GET", length: int | None = None,
            body: bytes = b"") -> socket.socket:
    """A raw connection that has sent a request's head (and ``body``), with the token."""
    s = socket.create_connection(("127.0.0.1", web.port), timeout=10)
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
            f"Cookie: {web.cookie()}\r\nOrigin: {web.url}\r\nX-CSRF-Token: {web.csrf}\r\n")
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    return s


def status_of(s: socket.socket, timeout: float = 10) -> int:
    """The status code of the answer on ``s`` (0 if it was closed without one)."""
    s.settimeout(timeout)
    try:
        line = s.recv(64).split(b"\r\n")[0]
    except (ConnectionResetError, TimeoutError):
        return 0
    return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


def answer_of(s: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """(status, what came) of the answer on ``s``: all of it up to the close, except for
    a 200 (an event stream, which stays open): its first bytes. (0, b"") if reset."""
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
            if got.startswith(b"HTTP/1.0 200 "):
                break
    except (ConnectionResetError, TimeoutError):
        if not got:
            return 0, b""
    line = got.split(b"\r\n")[0]
    return (int(line.split()[1]) if line.startswith(b"HTTP/") else 0), got


def post(web: Bridge, data: bytes, name: str = "x") -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    code, body, _ = fetch(f"{web.url}/enroll?name={name}", data=data, Cookie=web.cookie(),
                          Origin=web.url, X_CSRF_Token=web.csrf)
    return code, body, time.perf_counter() - t0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    d = DaemonProcess(tmp_path_factory.mktemp("limits")).start()
    try:
        yield d
    finally:
        d.stop()


def test_upload_bombs_are_refused_at_once_in_bounded_memory(daemon: DaemonProcess,
                                                           tmp_path: Path) -> None:
    web = start_web(daemon, free_port())
    eight_hz = tmp_path / "8hz.wav"
    sf.write(str(eight_hz), tone(8, 1875.0, 1.0), 8, subtype="PCM_16")  # 30 KB, 811 MB once
    flac = two_hours_of_flac(tmp_path / "2h.flac")  # 180 KB, 2 h
    liar = bytearray(flac.read_bytes())
    liar[21] &= 0xF0  # STREAMINFO's sample count: "unknown", so only decoding finds out
    liar[22:26] = bytes(4)
    bombs = {"8hz": (eight_hz.read_bytes(), "sample rate 8 Hz is outside"),
             "2h": (flac.read_bytes(), "7200.0 s of audio, more than the 120 s taken"),
             "liar": (bytes(liar), "more than the 120 s of audio taken")}
    try:
        for what, (data, why) in bombs.items():
            code, body, took = post(web, data)
            assert code == 400 and why.encode() in body, (what, body)
            assert took < (2.0 if what == "liar" else 1.0), (what, took)
        with ThreadPoolExecutor(3) as pool:  # three at once: two read, the third is busy
            answers = list(pool.map(lambda d: post(web, d)[:2], [flac.read_bytes()] * 3))
        assert sorted(code for code, _ in answers) in ([400, 400, 400], [400, 400, 503])
        assert vm(web.proc.pid, "VmHWM") < 200, vm(web.proc.pid, "VmHWM")
    finally:
        out = stop_web(web)
    assert "Traceback" not in out, out


def test_an_m4a_upload_enrolls(daemon: DaemonProcess, tmp_path: Path) -> None:
    # The format rule reaches the page: AAC in MP4, which libsndfile cannot read.
    convo = conversation(tmp_path)
    name = sorted(convo.enroll)[0]
    voice = np.concatenate([load_audio(p) for p in convo.enroll[name]])
    m4a = encode_with_pyav(voice, tmp_path / "voice.m4a", "aac")
    web = start_web(daemon, free_port())
    try:
        code, body, _ = post(web, m4a.read_bytes(), "from-m4a")
        assert code == 200 and b'"added"' in body, body
    finally:
        daemon.conn.request("remove", name="from-m4a")
        assert "Traceback" not in stop_web(web)


def test_a_corrupt_m4a_upload_is_answered_400(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A few flipped bytes left FFmpeg no decoder: an AttributeError dropped the connection.
    good = encode_with_pyav(tone(16000, 2.0, 300.0), tmp_path / "good.m4a", "aac")
    crash = no_decoder_m4a(good, tmp_path / "crash.m4a")
    web = start_web(daemon, free_port())
    try:
        code, body, _ = post(web, crash.read_bytes())
        assert code == 400 and b'"the upload: no decoder for its audio stream' in body, body
    finally:
        out = stop_web(web)
    assert "Traceback" not in out, out


def test_caps_and_slow_clients(daemon: DaemonProcess) -> None:
    limits = {"connections": 10, "streams": 3, "uploads": 2, "header_s": 1.0, "body_s": 1.5,
              "io_s": 1.0}
    web = start_web(daemon, free_port(), limits=limits)
    held: list[socket.socket] = []
    try:
        # Event streams: 3 at once, the fourth 503 at once; the page is served meanwhile.
        held += [request(web, "/events") for _ in range(3)]
        assert [status_of(s) for s in held] == [200] * 3
        t0 = time.monotonic()
        assert status_of(request(web, "/events")) == 503 and time.monotonic() - t0 < 0.5
        assert fetch(web.url + "/", Cookie=web.cookie())[0] == 200

        # Uploads: 2 being read (slowly), the third 503 at once, and the slow ones cut off.
        slow = [request(web, "/enroll?name=x", "POST", 100_000, b"RIFF") for _ in range(2)]
        time.sleep(0.2)
        t0 = time.monotonic()
        assert post(web, b"RIFF....")[0] == 503 and time.monotonic() - t0 < 0.5
        assert [status_of(s, 5) for s in slow] == [408, 408]
        assert time.monotonic() - t0 < 3.0
        assert post(web, b"not audio at all")[0] == 400  # the slots are free again

        # A client that sends its headers a byte at a time is cut off after header_s.
        drip = socket.create_connection(("127.0.0.1", web.port), timeout=5)
        t0 = time.monotonic()
        closed = False
        for c in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                drip.send(bytes([c]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            if time.monotonic() - t0 > 4:
                break
        closed = closed or drip.recv(100) == b""
        assert closed and time.monotonic() - t0 < 2.5

        # Connections: 3 streams and 7 idle ones fill the 10; the next is 503 at once.
        idle = [socket.create_connection(("127.0.0.1", web.port), timeout=5)
                for _ in range(7)]
        time.sleep(0.2)
        t0 = time.monotonic()
        assert status_of(request(web, "/state"), 2) == 503 and time.monotonic() - t0 < 0.5
        # The idle ones sent no request within header_s (1 s): closed, so a request is
        # served again, well before header_s and a loaded machine's slack have passed.
        assert all(s.recv(10) == b"" for s in idle)
        deadline = time.monotonic() + 10
        while fetch(web.url + "/state", Cookie=web.cookie())[0] != 200:
            assert time.monotonic() < deadline, "still refused 10 s after the idle closed"
            time.sleep(0.1)
        assert time.monotonic() - t0 < 6
    finally:
        for s in held:
            s.close()
        out = stop_web(web)
    assert "Traceback" not in out, out


def send_whole(web: Bridge, path: str, body: bytes, origin: str | None = None,
               token: bool = True) -> tuple[int, bytes]:
    """As a browser's fetch() does: the headers and the whole body at once, then the
    answer read. (0, why) when sending or reading failed (ECONNRESET, EPIPE)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
            f"Origin: {origin or web.url}\r\nX-CSRF-Token: {web.csrf}\r\n"
            f"Content-Length: {len(body)}\r\n")
    if token:
        head += f"Cookie: {web.cookie()}\r\n"
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as s:
        try:
            s.sendall(head.encode() + b"\r\n" + body)
        except OSError as e:
            return 0, repr(e).encode()
        return answer_of(s)


def test_an_early_answer_reaches_a_client_still_sending(daemon: DaemonProcess) -> None:
    """413, 503 and 403 are answered before the body is read: the bridge then reads and
    drops the body (bounded), so that the client, which sends it all before it reads,
    gets the answer and not a reset (a browser's "Failed to fetch")."""
    web = start_web(daemon, free_port())
    big, body = bytes(40 << 20), bytes(8 << 20)
    slow: list[socket.socket] = []
    try:
        for _ in range(5):
            code, got = send_whole(web, "/enroll?name=x", big)
            assert code == 413 and b"the upload is over 32 MB" in got, got[:200]
            code, got = send_whole(web, "/enroll?name=x", body, origin="http://evil.example")
            assert code == 403 and b"refused: made from another origin" in got, got[:200]
            code, got = send_whole(web, "/enroll?name=x", body, token=False)
            assert code == 403 and b"needs its token" in got, got[:200]
        # Both upload slots held by slow uploads: the next is 503 busy, and read.
        slow = [request(web, "/enroll?name=x", "POST", 100_000, b"RIFF") for _ in range(2)]
        time.sleep(0.3)
        for _ in range(5):
            code, got = send_whole(web, "/enroll?name=x", body)
            assert code == 503 and b"busy: 2 uploads are being read" in got, got[:200]
    finally:
        for s in slow:
            s.close()
        out = stop_web(web)
    assert "Traceback" not in out, out


@contextmanager
def paging(web: Bridge, every_s: float = 0.05) -> Iterator[list[float]]:
    """While inside: the page fetched every ``every_s`` in a thread of its own, as a person
    reloading it; yields the seconds each fetch answered 200 in (the list grows)."""
    served: list[float] = []
    done = threading.Event()

    def fetch_pages() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            if fetch(web.url + "/", Cookie=web.cookie())[0] == 200:
                served.append(time.perf_counter() - t0)
            done.wait(every_s)

    pager = threading.Thread(target=fetch_pages, daemon=True)
    pager.start()
    try:
        yield served
    finally:
        done.set()
        pager.join(10)


@pytest.mark.skipif(PRLIMIT is None, reason="prlimit (util-linux) is needed")
def test_420_event_streams_under_a_file_limit(daemon: DaemonProcess) -> None:
    web = start_web(daemon, free_port(), wrap=[str(PRLIMIT), "--nofile=1024:1024", "--"])
    streams: list[socket.socket] = []
    try:
        with paging(web) as served:
            for _ in range(420):
                streams.append(request(web, "/events"))
            codes = [status_of(s) for s in streams]
        # A 503 closes at once; on a loaded machine a refused connection may rarely be
        # reset before its 503 is read (none in 10 runs here), never more than 1 in 100.
        assert codes.count(200) == 32 and codes.count(200) + codes.count(503) + \
            codes.count(0) == 420 and codes.count(0) <= 4, {c: codes.count(c) for c in codes}
        assert served and max(served) < 1.0, served
        assert fetch(web.url + "/", Cookie=web.cookie())[0] == 200
    finally:
        for s in streams:
            s.close()
        out = stop_web(web)
    assert "Traceback" not in out and "Too many open files" not in out, out


@pytest.mark.skipif(PRLIMIT is None, reason="prlimit (util-linux) is needed")
def test_out_of_files_is_answered_not_a_traceback(daemon: DaemonProcess) -> None:
    # 18 files: a few more than the bridge holds at start, so that its daemon requests
    # and ZeroMQ sockets meet "Too many open files".
    web = start_web(daemon, free_port(), wrap=[str(PRLIMIT), "--nofile=18:18", "--"])
    held: list[socket.socket] = []
    try:
        held = [request(web, "/events") for _ in range(50)]
        answers = [answer_of(s) for s in held]
        codes = [code for code, _ in answers]
        # 403: with no file left, which local user connects cannot be learnt (sock_diag
        # and /proc both need one), and such a connection is refused, never let in.
        assert all(b"cannot be established" in body for code, body in answers if code == 403)
        assert codes.count(200) <= 2 and codes.count(200) + codes.count(503) + \
            codes.count(403) + codes.count(0) == 50 and codes.count(0) <= 1, \
            {c: codes.count(c) for c in codes}
        assert fetch(web.url + "/state", Cookie=web.cookie())[0] == 200  # "daemon": why not
        assert web.proc.poll() is None
    finally:
        for s in held:
            s.close()
        out = stop_web(web)
    assert "Traceback" not in out, out


def test_the_daemons_own_enrollment_maximum_bounds_uploads(tmp_path: Path) -> None:
    """The page refuses by the daemon's enroll.max_audio_s (its status says it), not a
    fixed 120 s: at the limit an upload is read, past it refused from the header."""
    config = tmp_path / "c.yaml"
    config.write_text("enroll: {max_audio_s: 10.0}\n")
    d = DaemonProcess(tmp_path, args=["--config", str(config)]).start()
    web = start_web(d, free_port())
    try:
        assert d.conn.request("status")["enroll_max_audio_s"] == 10.0
        at, past = tmp_path / "at.wav", tmp_path / "past.wav"
        sf.write(str(at), tone(16000, 10.0, 220.0), 16000, subtype="PCM_16")
        sf.write(str(past), tone(16000, 10.5, 220.0), 16000, subtype="PCM_16")
        code, body, _ = post(web, past.read_bytes())
        assert code == 400 and b"10.5 s of audio, more than the 10 s taken" in body, body
        code, body, _ = post(web, at.read_bytes())  # read and sent: a tone is no speech
        assert code == 400 and b"too little speech to enroll 'x'" in body, body
    finally:
        out = stop_web(web)
        d.stop()
    assert "Traceback" not in out, out
