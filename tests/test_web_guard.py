"""Who may use the web bridge: Host names (DNS rebinding), the token on loopback, the
same-origin and CSRF checks of an enrollment, and the local-user policy.

Real parts: a real daemon and bridge, real curl (the issue's own commands), a
real Chromium on a page of another origin, and, as root, a real other account
(``nobody``)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import soundfile as sf
from daemon_proc import DaemonProcess, free_port
from speakers_fixture import Conversation, conversation
from test_web import CLIENT, NEEDS_CHROMIUM, Bridge, chromium, fetch, start_web, stop_web

from vggvox.errors import VggvoxError
from vggvox_client.bridges.web import peer as webpeer
from vggvox_client.bridges.web.requestcheck import Guard, generated_token, read_token_file

CURL = shutil.which("curl")


def other_user() -> str | None:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None
    return "nobody"

PATHS = ["/", "/state", "/speakers", "/events", "/nothing"]


# ------------------------------------------------------------------------- the rules alone


def test_host_names_it_serves() -> None:
    g = Guard("127.0.0.1", 8765, "t" * 43, ["vggvox.lan", "proxy.example:443"])
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LocalHost:8765",
                 "vggvox.lan", "vggvox.lan:8765", "proxy.example:443"):
        assert g.host_ok(host), host
    for host in ("evil.example:8765", "evil.example", "127.0.0.1:9999", "127.0.0.1", "",
                 None, "proxy.example", "vggvox.lan.evil.example:8765", "192.168.1.5:8765"):
        assert not g.host_ok(host), host
    wild = Guard("0.0.0.0", 8765, "t" * 43)
    assert wild.host_ok("192.168.1.5:8765") and wild.host_ok("[fe80::1]:8765")
    assert not wild.host_ok("192.168.1.5:80") and not wild.host_ok("evil.example:8765")


def test_a_post_must_come_from_the_page() -> None:
    g = Guard("127.0.0.1", 8765, "t" * 43)
    good = {"Origin": "http://127.0.0.1:8765", "X-CSRF-Token": g.csrf,
            "Sec-Fetch-Site": "same-origin"}
    assert g.cross_site(good) is None
    assert g.cross_site({**good, "Origin": "http://localhost:8765"}) is None
    for change, why in ((("Origin", "http://evil.example"), "another origin"),
                        (("Origin", "http://127.0.0.1:8766"), "another origin"),
                        (("Origin", "null"), "another origin"),
                        (("Origin", ""), "no Origin"),
                        (("Sec-Fetch-Site", "same-site"), "another site"),
                        (("Sec-Fetch-Site", "cross-site"), "another site"),
                        (("X-CSRF-Token", ""), "X-CSRF-Token"),
                        (("X-CSRF-Token", g.csrf[:-1] + "0"), "X-CSRF-Token")):
        refused = g.cross_site({**good, change[0]: change[1]})
        assert refused is not None and why in refused, (change, refused)
    # The CSRF value is the token's: another bridge's page does not fit.
    assert Guard("127.0.0.1", 8765, "u" * 43).csrf != g.csrf


def test_the_token_travels_by_cookie_query_or_bearer() -> None:
    g = Guard("127.0.0.1", 8765, "s3cret" * 8)
    assert g.authorized({"Cookie": f"a=b; vggvox-web-8765={g.token}"}, {})
    assert g.authorized({}, {"token": [g.token]})
    assert g.authorized({"Authorization": f"Bearer {g.token}"}, {})
    for headers in ({}, {"Cookie": f"vggvox-web-8766={g.token}"}, {"Cookie": "\x00;;=="},
                    {"Cookie": "vggvox-web-8765=" + g.token[:-1]},
                    {"Authorization": f"Basic {g.token}"}):
        assert not g.authorized(headers, {}), headers
    assert "HttpOnly" in g.set_cookie() and "SameSite=Strict" in g.set_cookie()


OTHER_APPS_COOKIES = ('grafana={"x": 1}', "ab cd=1", 'session="unterminated')
"""Cookies of other apps on this host (cookies are shared across its ports) that
SimpleCookie stops at, with the page's own after them."""


def test_other_apps_cookies_do_not_hide_the_page_s() -> None:
    g = Guard("127.0.0.1", 8765, "s3cret" * 8)
    for other in OTHER_APPS_COOKIES:
        for header in (f"{other}; vggvox-web-8765={g.token}",
                       f"vggvox-web-8765={g.token}; {other}",
                       f'{other};vggvox-web-8765="{g.token}"'):
            assert g.authorized({"Cookie": header}, {}), header
        assert not g.authorized({"Cookie": other}, {}), other
    # Another app may set a cookie of the same name: the right one still counts.
    assert g.authorized({"Cookie": f"vggvox-web-8765=x; vggvox-web-8765={g.token}"}, {})


def test_a_generated_token_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "web-8765.token"
    token = generated_token(path)
    assert len(token) >= 43 and path.stat().st_mode & 0o777 == 0o600
    assert generated_token(path) == token  # a restart keeps open pages working
    path.chmod(0o644)  # someone widened it: not trusted any more
    fresh = generated_token(path)
    assert fresh != token and path.stat().st_mode & 0o777 == 0o600


def test_a_token_file_must_be_private_and_plain(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("abc-DEF_123.~+/=\n")
    path.chmod(0o640)  # a group may read it: that group may use the page
    assert read_token_file(path) == "abc-DEF_123.~+/="
    path.write_text("has space;and=more\n")
    with pytest.raises(VggvoxError, match=r"token: the token may hold letters, digits and "):
        read_token_file(path)
    with pytest.raises(VggvoxError, match=r"nothere: cannot read it: No such file"):
        read_token_file(tmp_path / "nothere")


def test_the_owner_of_a_local_connection_is_found() -> None:
    little = sys.byteorder == "little"
    assert webpeer._hex("127.0.0.1", 8080) == ("0100007F" if little else "7F000001") + ":1F90"
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, address = server.accept()
        try:
            # By sock_diag netlink, and by the /proc table where netlink is shut.
            for find in (webpeer.owner, webpeer._table_owner):
                assert find(address, conn.getsockname()) == os.getuid(), find
                # No such connection: the kernel's lookup falls back to the listener on
                # that port, which is not a client's socket.
                assert find(conn.getsockname(), ("127.0.0.1", 1)) is None, find
            # Closed by its owner, the client's end lingers (FIN_WAIT) as an orphan that
            # the kernel reports as root's: no owner, not uid 0.
            client.close()
            for find in (webpeer.owner, webpeer._table_owner):
                assert find(address, conn.getsockname()) is None, find
            why = webpeer.refusal(Path("/nonexistent.sock"), address, conn.getsockname())
            assert why is not None and "cannot be established" in why, why
        finally:
            conn.close()
            client.close()


def test_which_addresses_are_this_machine_s() -> None:
    for address in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert webpeer.is_local(address) is True, address
    for address in ("192.0.2.1", "2001:db8::1"):  # documentation ranges: nobody's
        assert webpeer.is_local(address) is False, address
    # From another machine: the token guards it alone; no owner is looked for.
    assert webpeer.refusal(Path("/nonexistent.sock"), ("192.0.2.1", 40000),
                           ("127.0.0.1", 8765)) is None


@pytest.mark.skipif(os.geteuid() != 0 or other_user() is None,
                    reason="needs root and a 'nobody' account, to give files to others")
def test_the_socket_s_permissions_decide_who_is_admitted() -> None:
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp: searchable by all
    try:
        path = folder / "control.sock"
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))
            assert webpeer.admits(path, 0) and webpeer.admits(path, os.getuid())
            ours = nobody.pw_gid
            for folder_mode, folder_group, sock_mode, sock_group, admitted in (
                    (0o700, 0, 0o666, 0, False),        # the folder shuts others out
                    (0o755, 0, 0o600, 0, False),        # the socket is its owner's
                    (0o750, 0, 0o660, ours, False),     # the folder is not the group's
                    (0o710, ours, 0o660, ours, True),   # the group's, all the way
                    (0o710, ours, 0o606, ours, False),  # a group the mode leaves out
                    (0o755, 0, 0o666, 0, True)):        # open to every local user
                folder.chmod(folder_mode)
                os.chown(folder, 0, folder_group)
                path.chmod(sock_mode)
                os.chown(path, 0, sock_group)
                assert webpeer.admits(path, nobody.pw_uid) == admitted, (oct(folder_mode),
                                                                          oct(sock_mode))
            assert not webpeer.admits(folder / "absent.sock", nobody.pw_uid)
    finally:
        shutil.rmtree(folder)


# ------------------------------------------------------------------ a real daemon and bridge


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[DaemonProcess, Bridge, Conversation]]:
    tmp = tmp_path_factory.mktemp("guard")
    convo = conversation(tmp)
    d = DaemonProcess(tmp).start()
    web = start_web(d, free_port())
    try:
        yield d, web, convo
    finally:
        out = stop_web(web)
        d.stop()
        assert "Traceback" not in out, out


def curl(*args: str) -> tuple[int, str]:
    """(HTTP status, body) of one real curl."""
    assert CURL is not None
    out = subprocess.run([CURL, "-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", *args],
                         capture_output=True, text=True, timeout=30).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def speakers(d: DaemonProcess) -> list[str]:
    return [s["name"] for s in d.conn.request("list")["speakers"]]


@pytest.mark.skipif(CURL is None, reason="curl is needed")
def test_another_host_name_gets_421(served: tuple[DaemonProcess, Bridge, Conversation]
                                    ) -> None:
    d, web, convo = served
    evil = f"Host: evil.example:{web.port}"
    for path in PATHS:  # the rebinding request, even with the right token
        code, body = curl("-H", evil, "-H", f"Cookie: {web.cookie()}", web.url + path)
        assert code == 421 and "does not serve Host 'evil.example" in body, (path, body)
    code, _ = curl("-X", "POST", "-H", evil, "-H", f"Origin: http://evil.example:{web.port}",
                   "-H", f"Cookie: {web.cookie()}", "-H", f"X-CSRF-Token: {web.csrf}",
                   "--data-binary", f"@{convo.enroll[sorted(convo.enroll)[0]][0]}",
                   f"{web.url}/enroll?name=victim")
    assert code == 421 and "victim" not in speakers(d)


def test_without_the_token_everything_is_403(served: tuple[DaemonProcess, Bridge, Conversation]
                                             ) -> None:
    _, web, _ = served
    for path in PATHS:
        code, body, _ = fetch(web.url + path)
        assert code == 403 and b"vggvox-client web printed" in body, path
        code, _, _ = fetch(f"{web.url}{path}?token={web.token[:-2]}")
        assert code == 403, path
    code, body, headers = fetch(web.url + "/", Accept="text/html")
    assert code == 403 and headers["Content-Type"].startswith("text/html")
    code, _, _ = fetch(web.url + "/enroll?name=x", data=b"RIFF")
    assert code == 403


def test_the_token_url_sets_a_private_cookie(served: tuple[DaemonProcess, Bridge, Conversation]
                                             ) -> None:
    _, web, _ = served
    code, _, headers = fetch(f"{web.url}/?token={web.token}")
    assert code == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(web.cookie() + ";")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    code, body, headers = fetch(web.url + "/", Cookie=web.cookie())
    assert code == 200 and f'content="{web.csrf}"'.encode() in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert web.token.encode() not in body  # the page never holds the token itself
    code, body, _ = fetch(web.url + "/state", Cookie=web.cookie())
    assert code == 200 and b'"stdin"' in body
    for other in OTHER_APPS_COOKIES:  # as a browser sends them, another app's first
        code, _, _ = fetch(web.url + "/state", Cookie=f"{other}; {web.cookie()}")
        assert code == 200, other


@pytest.mark.skipif(CURL is None, reason="curl is needed")
def test_an_enrollment_must_come_from_the_page(
        served: tuple[DaemonProcess, Bridge, Conversation]) -> None:
    d, web, convo = served
    name = sorted(convo.enroll)[0]
    clip = f"@{convo.enroll[name][0]}"
    own = f"Origin: http://127.0.0.1:{web.port}"
    auth = ("-H", f"Cookie: {web.cookie()}")
    attempts = {  # the command first: it enrolled
        "evil origin": ("-H", "Origin: http://evil.example", "-H", "Content-Type: text/plain"),
        "no origin": (),
        "other site": ("-H", own, "-H", "Sec-Fetch-Site: cross-site", "-H",
                       f"X-CSRF-Token: {web.csrf}"),
        "no csrf": ("-H", own),
        "wrong csrf": ("-H", own, "-H", "X-CSRF-Token: " + "0" * 64),
    }
    for what, headers in attempts.items():
        code, body = curl("-X", "POST", *auth, *headers, "--data-binary", clip,
                          f"{web.url}/enroll?name=victim")
        assert code == 403 and "refused" in body, (what, body)
    assert "victim" not in speakers(d)
    code, body = curl("-X", "POST", *auth, "-H", own, "-H", f"X-CSRF-Token: {web.csrf}",
                      "--data-binary", clip, f"{web.url}/enroll?name=by-the-page")
    assert code == 200 and '"added"' in body, body
    assert speakers(d) == ["by-the-page"]
    d.conn.request("remove", name="by-the-page")


def test_allowed_host_names_are_served(served: tuple[DaemonProcess, Bridge, Conversation]
                                       ) -> None:
    d, _, _ = served
    web = start_web(d, free_port(), "--allow-host", "vggvox.lan")  # the command line's
    try:
        for host in ("vggvox.lan", f"vggvox.lan:{web.port}"):
            code, _, _ = fetch(web.url + "/state", Host=host, Cookie=web.cookie())
            assert code == 200, host
        code, _, _ = fetch(web.url + "/state", Host="other.lan", Cookie=web.cookie())
        assert code == 421
        code, body, _ = fetch(web.url + "/enroll?name=x", data=b"not audio", Host="vggvox.lan",
                              Origin="http://vggvox.lan", Cookie=web.cookie(),
                              X_CSRF_Token=web.csrf)
        assert code == 400 and b"not readable as audio" in body  # past every check
    finally:
        assert "Traceback" not in stop_web(web)


def test_print_url_shows_the_kept_token(served: tuple[DaemonProcess, Bridge, Conversation]
                                         ) -> None:
    d, web, _ = served
    env = {**os.environ, "XDG_RUNTIME_DIR": str(d.tmp / f"xdg-{web.port}")}
    out = subprocess.run([str(CLIENT), "--control", d.conn.control, "--events", d.conn.events,
                          "web", "--listen", f"127.0.0.1:{web.port}", "--print-url"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == f"{web.url}/?token={web.token}\n", out


def print_url(d: DaemonProcess, port: int, *args: str, **env: str
              ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    return subprocess.run([str(CLIENT), "--control", d.conn.control, "--events",
                           d.conn.events, "web", "--listen", f"127.0.0.1:{port}",
                           "--print-url", *args], env={**environ, **env},
                          capture_output=True, text=True, timeout=30)


def test_print_url_only_reads(served: tuple[DaemonProcess, Bridge, Conversation],
                              tmp_path: Path) -> None:
    """--print-url never writes: a kept token file someone widened (which the bridge
    replaces at its next start) is still the running bridge's token, and that is the
    URL to print; where there is none, nothing is made."""
    d, web, _ = served
    xdg = d.tmp / f"xdg-{web.port}"
    kept = xdg / "vggvox" / f"web-{web.port}.token"
    kept.chmod(0o644)
    try:
        out = print_url(d, web.port, XDG_RUNTIME_DIR=str(xdg))
        assert out.returncode == 0 and out.stdout == f"{web.url}/?token={web.token}\n", out
        assert kept.read_text().strip() == web.token and kept.stat().st_mode & 0o777 == 0o644
    finally:
        kept.chmod(0o600)
    assert fetch(f"{web.url}/?token={web.token}")[0] == 303
    empty = tmp_path / "xdg"
    empty.mkdir(mode=0o700)
    out = print_url(d, web.port, XDG_RUNTIME_DIR=str(empty))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out
    assert f"no token in {empty}/vggvox/web-{web.port}.token" in out.stderr, out
    assert list(empty.iterdir()) == []  # no folder made, no token


@pytest.mark.skipif(os.geteuid() != 0 or other_user() is None,
                    reason="needs root and a 'nobody' account, to be root reading another's")
def test_root_prints_the_service_s_url(served: tuple[DaemonProcess, Bridge, Conversation],
                                       tmp_path: Path) -> None:
    """The service keeps its token in /run/vggvox-web, owned by its DynamicUser: root
    prints its URL as docs/web.md says, by the folder or by the file."""
    d, _, _ = served
    service = tmp_path / "vggvox-web"
    service.mkdir(mode=0o700)
    web = start_web(d, free_port(), service_dir=service)
    try:
        nobody = pwd.getpwnam("nobody")
        for p in (service, *service.iterdir()):  # as systemd's DynamicUser owns them
            os.chown(p, nobody.pw_uid, nobody.pw_gid)
        token_file = service / f"web-{web.port}.token"
        for out in (print_url(d, web.port, RUNTIME_DIRECTORY=str(service)),
                    print_url(d, web.port, "--token-file", str(token_file))):
            assert out.returncode == 0 and out.stdout == f"{web.url}/?token={web.token}\n", out
        assert fetch(f"{web.url}/?token={web.token}")[0] == 303
        assert token_file.stat().st_uid == nobody.pw_uid  # read, not replaced
    finally:
        assert "Traceback" not in stop_web(web)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the probe as another user")
@pytest.mark.skipif(shutil.which("runuser") is None or CURL is None or other_user() is None,
                    reason="needs runuser, curl and a 'nobody' account")
def test_a_local_user_without_the_socket_gets_nothing(
        served: tuple[DaemonProcess, Bridge, Conversation]) -> None:
    d, web, convo = served

    def as_nobody(*argv: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["runuser", "-u", "nobody", "--", *argv], input=data,
                              capture_output=True, timeout=30)

    # The premise: the daemon's socket is closed to this user.
    control = d.conn.control.removeprefix("ipc://")
    probe = as_nobody("python3", "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX)\n"
                      f"try: s.connect({control!r})\nexcept PermissionError: sys.exit(13)")
    assert probe.returncode == 13, probe
    # Neither can it read the token where the bridge keeps it.
    kept = next(d.tmp.glob(f"xdg-{web.port}/vggvox/web-{web.port}.token"))
    assert as_nobody("cat", str(kept)).returncode != 0
    # So through the page it gets 403 for everything,
    for path in PATHS:
        out = as_nobody(CURL or "curl", "-s", "-m", "5", "-o", "/dev/null", "-w",
                        "%{http_code}", web.url + path)
        assert out.stdout == b"403", (path, out)
    # even with the token (a cookie reaches every port of the host: its own server on
    # another port would get it from the page's user's browser).
    for path in PATHS:
        out = as_nobody(CURL or "curl", "-s", "-m", "5", "-H", f"Cookie: {web.cookie()}",
                        "-w", "%{http_code}", web.url + path)
        assert out.stdout.endswith(b"403"), (path, out)
        assert b"may not use vggvoxd's control socket" in out.stdout, out
    # And an enrollment with the token and the CSRF value (an HMAC of the token): the
    # uid check refuses it, not the token or origin checks.
    clip = convo.enroll[sorted(convo.enroll)[0]][0].read_bytes()  # on stdin: nobody can't read it
    out = as_nobody(CURL or "curl", "-s", "-m", "5", "-w", "%{http_code}",
                    "-H", f"Cookie: {web.cookie()}", "-H", f"Origin: {web.url}",
                    "-H", f"X-CSRF-Token: {web.csrf}", "--data-binary", "@-",
                    f"{web.url}/enroll?name=victim", data=clip)
    assert out.stdout.endswith(b"403"), out
    assert b"may not use vggvoxd's control socket" in out.stdout, out
    assert "victim" not in speakers(d)


SEND_AND_CLOSE = """
import socket, struct, sys
port, how = int(sys.argv[1]), sys.argv[2]
request = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(request)
if how == "reset":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
"""
"""A client that sends its whole request and closes at once (as ``how``: a plain
close leaves an orphaned socket the kernel reports as root's; a reset leaves none),
never reading the answer. Standard library only: nobody cannot run the venv."""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run the probe as another user")
@pytest.mark.skipif(shutil.which("runuser") is None or other_user() is None,
                    reason="needs runuser and a 'nobody' account")
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_local_user_who_closes_at_once_is_still_refused(
        served: tuple[DaemonProcess, Bridge, Conversation], tmp_path: Path, how: str) -> None:
    """nobody, with the stolen token and CSRF value, sends a complete enrollment and
    closes before the bridge reads it: the orphaned socket (or none, after a reset)
    must not pass for root's, or for another machine's. Nothing is enrolled."""
    d, _, convo = served
    # One connection at a time: a request of ours is served (not 503) only once the
    # bridge has finished with nobody's, which came first.
    web = start_web(d, free_port(), limits={"connections": 1})
    # As FLAC, so that the whole request fits the bridge's receive buffer and is all
    # there to read even after a reset.
    wav = convo.enroll[sorted(convo.enroll)[0]][0]
    sf.write(str(tmp_path / "voice.flac"), *sf.read(str(wav)))
    clip = (tmp_path / "voice.flac").read_bytes()
    head = (f"POST /enroll?name=victim-{how} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
            f"Cookie: {web.cookie()}\r\nOrigin: {web.url}\r\nX-CSRF-Token: {web.csrf}\r\n"
            f"Content-Length: {len(clip)}\r\n\r\n")
    try:
        # The bridge stopped meanwhile, so that nobody's socket is closed before the
        # bridge reads a byte (the kernel queues the connection and its request), as on
        # a busy machine; else the bridge might see it still open, by chance.
        web.proc.send_signal(signal.SIGSTOP)
        try:
            sent = subprocess.run(["runuser", "-u", "nobody", "--", "python3", "-c",
                                   SEND_AND_CLOSE, str(web.port), how],
                                  input=head.encode() + clip, capture_output=True, timeout=30)
        finally:
            web.proc.send_signal(signal.SIGCONT)
        assert sent.returncode == 0, sent
        deadline = time.monotonic() + 60
        while fetch(web.url + "/state", Cookie=web.cookie())[0] != 200:
            assert time.monotonic() < deadline, "the bridge is still busy with it"
            time.sleep(0.1)
        assert f"victim-{how}" not in speakers(d)
    finally:
        out = stop_web(web)
    assert "Traceback" not in out, out


def test_a_local_user_the_socket_admits_may_use_the_page() -> None:
    # The same user, nobody, with the daemon's sockets shared with its group: the page
    # follows the socket's rules both ways.
    nobody = pwd.getpwnam("nobody")
    tmp = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp: searchable by all
    try:
        os.chown(tmp, 0, nobody.pw_gid)
        tmp.chmod(0o710)
        d = DaemonProcess(tmp, args=["--socket-group", "nogroup"])
        store = tmp / "store"
        store.mkdir(mode=0o700)
        d.argv[d.argv.index("--store") + 1] = str(store / "voiceprints.db")
        d.start()
        web = start_web(d, free_port())
        try:
            def code(*args: str) -> bytes:
                return subprocess.run(["runuser", "-u", "nobody", "--", CURL or "curl", "-s",
                                       "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                       *args, web.url + "/state"], capture_output=True,
                                      timeout=30).stdout
            assert code("-H", f"Cookie: {web.cookie()}") == b"200"
            assert code() == b"403"  # the token is still needed
        finally:
            out = stop_web(web)
            d.stop()
        assert "Traceback" not in out
    finally:
        shutil.rmtree(tmp)


ATTACK = """<!doctype html><title>loading</title>
<form id="form" method="POST" enctype="text/plain" action="{bridge}/enroll?name=victim-form">
<input name="x" value="y"></form>
<script>
fetch("/voice.wav").then((r) => r.blob()).then((voice) =>
  fetch("{bridge}/enroll?name=victim-fetch", {{method: "POST", mode: "no-cors",
                                               credentials: "include", body: voice}}))
  .then(() => "answered", () => "failed")
  .then((how) => fetch("/report?fetch=" + how))  // an opaque answer: it reached the bridge
  .finally(() => document.getElementById("form").submit());
</script>"""


@NEEDS_CHROMIUM
def test_a_page_of_another_origin_cannot_enroll(
        served: tuple[DaemonProcess, Bridge, Conversation], tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    d, web, convo = served
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(convo.enroll[sorted(convo.enroll)[0]][0], site / "voice.wav")
    (site / "attack.html").write_text(ATTACK.format(bridge=web.url))
    attacker = ThreadingHTTPServer(("127.0.0.1", free_port()),
                                   partial(QuietHandler, directory=str(site)))
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    browser = chromium(tmp_path)
    try:
        browser.get(f"{web.url}/?token={web.token}")  # the victim has the page's cookie
        # Same site (the cookie goes along: ports do not count), and another site.
        for origin in (f"http://127.0.0.1:{attacker.server_port}",
                       f"http://localhost:{attacker.server_port}"):
            browser.get(origin + "/attack.html")
            WebDriverWait(browser, 20).until(lambda b: b.current_url.startswith(web.url))
            # Refused for its origin, or (where Chromium binds cookies to their port, or
            # across sites) for want of the token: a 403 either way.
            try:
                WebDriverWait(browser, 20).until(
                    lambda b: "refused: made from another" in b.page_source
                    or "this page needs its token" in b.page_source)
            except Exception:
                raise AssertionError((origin, browser.current_url, browser.page_source)) from None
        assert QuietHandler.seen.count("/report?fetch=answered") == 2, QuietHandler.seen
        assert not [n for n in speakers(d) if n.startswith("victim")]
    finally:
        browser.quit()
        attacker.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    seen: ClassVar[list[str]] = []
    """The paths the attacker's server was asked for."""

    def do_GET(self) -> None:
        QuietHandler.seen.append(self.path)
        super().do_GET()

    def log_message(self, fmt: str, *args: object) -> None:
        pass
