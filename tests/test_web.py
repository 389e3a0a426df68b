"""``vggvox-client web`` in a real headless Chromium (Debian's, through chromium-driver).

The page loads, a conversation is replayed through a real daemon, and its
timeline must show the right names in the right order; a new speaker is
enrolled from a file uploaded through the page. A screenshot is kept as an
artefact (``web.png`` in the test's folder).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import DaemonProcess, free_port, stop_process
from speakers_fixture import conversation
from test_access import curve_daemon  # noqa: F401 - a fixture, used by name

from vggvox.errors import VggvoxError
from vggvox_client.bridges.web.app import parse_listen
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

CLIENT = Path(sys.executable).parent / "vggvox-client"
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")


def test_off_loopback_needs_a_token() -> None:
    assert parse_listen("127.0.0.1:8765", None) == ("127.0.0.1", 8765)
    with pytest.raises(VggvoxError, match="not loopback: give --token-file"):
        parse_listen("0.0.0.0:8765", None)
    assert parse_listen("0.0.0.0:8765", "secret") == ("0.0.0.0", 8765)
    with pytest.raises(VggvoxError, match="--listen must be HOST:PORT"):
        parse_listen("8765", None)


RUNNER = """
import json, sys
from pathlib import Path
from vggvox_client.bridges.web import app as web
from vggvox_client.connection import Connection
control, events, listen, limits, token_file, prelude, *hosts = sys.argv[1:]
exec(prelude)
sys.exit(web.run(Connection(control, events), listen, Path(token_file) if token_file else None,
                 hosts, limits=web.Limits(**json.loads(limits))))
"""
"""The bridge with limits a test can wait out (no command-line flag sets them), after
``prelude`` (Python: a fault put in on purpose)."""


@dataclass
class Bridge:
    proc: subprocess.Popen[bytes]
    port: int
    token: str
    tmp: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"vggvox-web csrf", hashlib.sha256).hexdigest()

    def cookie(self) -> str:
        return f"vggvox-web-{self.port}={self.token}"


def start_web(d: DaemonProcess, port: int, *extra: str, limits: dict[str, Any] | None = None,
              token_file: Path | None = None, allow_hosts: tuple[str, ...] = (),
              wrap: list[str] | None = None, prelude: str = "",
              service_dir: Path | None = None) -> Bridge:
    """The bridge in its own process, its runtime folder in the test's (so that its
    generated token is found there), or ``service_dir`` as a service's
    ``RUNTIME_DIRECTORY``; ``limits`` or ``prelude`` runs it through ``RUNNER``."""
    runtime = d.tmp / f"xdg-{port}"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("RUNTIME_DIRECTORY", None)
    kept = runtime / "vggvox" / f"web-{port}.token"
    if service_dir is not None:
        env["RUNTIME_DIRECTORY"] = str(service_dir)
        kept = service_dir / f"web-{port}.token"
    if limits is None and not prelude:
        argv = [str(CLIENT), "--control", d.conn.control, "--events", d.conn.events, "web",
                "--listen", f"127.0.0.1:{port}", *extra]
        if token_file is not None:
            argv += ["--token-file", str(token_file)]
    else:
        argv = [sys.executable, "-c", RUNNER, d.conn.control, d.conn.events,
                f"127.0.0.1:{port}", json.dumps(limits or {}), str(token_file or ""), prelude,
                *allow_hosts]
    proc = subprocess.Popen([*(wrap or []), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            token = (token_file or kept).read_text()
            return Bridge(proc, port, token.strip(), d.tmp)
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.communicate()[0].decode())


def stop_web(bridge: Bridge | subprocess.Popen[bytes]) -> str:
    proc = bridge.proc if isinstance(bridge, Bridge) else bridge
    out = stop_process(proc)
    assert proc.returncode == 0, out
    return out


def fetch(url: str, data: bytes | None = None, timeout: float = 10,
          **headers: str) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one request, whatever the status."""
    req = urllib.request.Request(url, data=data, headers={k.replace("_", "-"): v
                                                          for k, v in headers.items()})
    try:
        with NO_REDIRECT.open(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


NO_REDIRECT = urllib.request.build_opener(_NoRedirect)


def test_a_token_guards_every_request(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).start()
    (tmp_path / "token").write_text("s3cret-token\n")
    (tmp_path / "token").chmod(0o600)
    port = free_port()
    web = start_web(d, port, token_file=tmp_path / "token")
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/speakers", timeout=5)
        assert e.value.code == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/speakers?token=s3cret-token",
                                    timeout=5) as r:
            assert json.loads(r.read())["speakers"] == []
    finally:
        out = stop_web(web)
        d.stop()
    assert "Traceback" not in out


NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                    reason="chromium and chromium-driver are needed "
                                           "(make test installs them)")


def chromium(tmp: Path) -> Any:
    """A real headless Chromium, through Debian's chromium-driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
                f"--user-data-dir={tmp / 'chromium'}"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    browser.set_page_load_timeout(30)
    return browser


def test_a_token_file_every_user_may_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    token.chmod(0o644)
    out = subprocess.run([str(CLIENT), "web", "--token-file", str(token)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().endswith(f"--token-file {token}: every local user may read it "
                                       "(mode 644), and with it use the page: chmod 600 it "
                                       "(or 640, for a group)")
    assert "Traceback" not in out.stderr


@NEEDS_CHROMIUM
def test_the_page_shows_who_speaks_and_enrolls_an_upload(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    convo = conversation(tmp_path)
    names = list(convo.enroll)
    d = DaemonProcess(tmp_path).start()
    for name in names[:1]:  # the second speaker is enrolled through the page, below
        enroll(d.conn, name, convo.enroll[name], None, False, 16 << 20)
    web = start_web(d, free_port())
    browser = chromium(tmp_path)
    try:
        # Opened with its token, as printed: the token goes into a cookie, out of the URL.
        browser.get(f"{web.url}/?token={web.token}")
        assert browser.current_url == web.url + "/"
        # The current state at once, not at the daemon's next heartbeat (5 s).
        now = WebDriverWait(browser, 2)
        now.until(lambda b: names[0] in b.find_element(By.ID, "speakers").text)
        now.until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-source='stdin']"))
        wait = WebDriverWait(browser, 30)

        # Enroll the second speaker from a file, through the page's form.
        browser.find_element(By.ID, "name").send_keys(names[1])
        browser.find_element(By.ID, "file").send_keys(str(convo.enroll[names[1]][0]))
        browser.find_element(By.CSS_SELECTOR, "#enroll button").click()
        wait.until(lambda b: "enrolled " + names[1] in b.find_element(By.ID, "enrolled").text)
        wait.until(lambda b: names[1] in b.find_element(By.ID, "speakers").text)

        events = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
        source = events[0]["source"]
        row = f"tr[data-source='{source}'] .turn"
        spoken = [t[2] for t in convo.turns]
        expected = [s for i, s in enumerate(spoken) if i == 0 or s != spoken[i - 1]]

        def labels(b: Any) -> list[str]:
            # Read in one script: the page redraws its rows on every event, so element
            # references taken one by one can go stale in between.
            said: list[str] = b.execute_script(
                "return [...document.querySelectorAll(arguments[0])]"
                ".map(e => [e.getBoundingClientRect().left, e.textContent])"
                ".sort((a, b) => a[0] - b[0]).map(x => x[1]);", row)
            # Two turns of one speaker in a row (a pause between) read as one change.
            return [x for i, x in enumerate(said) if i == 0 or x != said[i - 1]]

        try:
            wait.until(lambda b: labels(b) == expected)
        except Exception:
            raise AssertionError(f"timeline {labels(browser)}, spoken {expected}") from None
        browser.save_screenshot(str(tmp_path / "web.png"))

        # A page opened after the replay draws its timeline at once, with no new event.
        browser.switch_to.new_window("tab")
        browser.get(web.url + "/")
        try:
            now.until(lambda b: labels(b) == expected)
        except Exception:
            raise AssertionError(f"a new page shows {labels(browser)}, not {expected}") from None
    finally:
        browser.quit()
        out = stop_web(web)
        d.stop()
    assert (tmp_path / "web.png").stat().st_size > 1000
    assert "Traceback" not in out


def post_voice(web: Bridge, data: bytes, name: str) -> tuple[int, dict[str, Any]]:
    code, body, _ = fetch(f"{web.url}/enroll?name={name}", data=data, Cookie=web.cookie(),
                          Origin=web.url, X_CSRF_Token=web.csrf, timeout=60)
    return code, json.loads(body)


FAULTS = """
import vggvox_client.bridges.web.app as w
def fault(*args, **kw):
    raise RuntimeError("a fault put in on purpose")
w.load_audio = w.page_state = fault
"""


def test_a_failure_inside_the_bridge_is_answered_500_in_one_line(tmp_path: Path) -> None:
    """Whatever a handler did not foresee is answered 500 in one line and logged in one,
    never a dropped connection (a corrupt M4A used to drop it with a traceback)."""
    d = DaemonProcess(tmp_path).start()
    web = start_web(d, free_port(), prelude=FAULTS)
    try:
        for path, data in (("/state", None), ("/enroll?name=x", b"RIFF....")):
            code, body, _ = fetch(web.url + path, data=data, Cookie=web.cookie(),
                                  Origin=web.url, X_CSRF_Token=web.csrf)
            assert code == 500, (path, code, body)
            assert json.loads(body) == {"error": "the web bridge failed (RuntimeError: a "
                                                 "fault put in on purpose); its log says more"}
        assert fetch(web.url + "/speakers", Cookie=web.cookie())[0] == 200  # still serving
    finally:
        out = stop_web(web)
        d.stop()
    assert "Traceback" not in out, out
    assert "GET /state failed: RuntimeError: a fault put in on purpose" in out, out
    assert "POST /enroll failed: RuntimeError: a fault put in on purpose" in out, out


def test_the_daemon_s_refusals_keep_their_http_meaning(tmp_path: Path) -> None:
    """A read-only store is 503 (the server's state, not the request's fault: it was
    400), and so is the daemon gone; each with the daemon's words and code. (A tone,
    the request's fault, is 400: test_web_limits.)"""
    from test_store_health import tmpfs

    convo = conversation(tmp_path)
    voice = convo.enroll[sorted(convo.enroll)[0]][0].read_bytes()
    with tmpfs(tmp_path / "ro", "8m") as mnt:
        d = DaemonProcess(tmp_path)
        d.store = mnt / "voiceprints.db"
        d.argv[d.argv.index("--store") + 1] = str(d.store)
        d.start(timeout=60)
        d.stop()  # the store made; now its file system goes read-only
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, timeout=10)
        d.start(timeout=60)
        web = start_web(d, free_port())
        try:
            code, reply = post_voice(web, voice, "carol")
            assert code == 503 and reply["code"] == "store", reply
            assert "is mounted read-only; nothing was written" in reply["error"], reply
            d.stop()
            code, reply = post_voice(web, voice, "carol")
            assert code == 503 and reply["code"] == "unreachable", reply
        finally:
            out = stop_web(web)
            d.stop()
    assert "Traceback" not in out, out


def test_a_reader_s_key_makes_an_enrollment_403(
        curve_daemon: tuple[DaemonProcess, Path], tmp_path: Path) -> None:  # noqa: F811
    """A bridge that holds a CURVE reader's key may show the page; the daemon refuses
    its enrollments (not_allowed), and the page says 403, not 400."""
    d, keys = curve_daemon
    (tmp_path / "token").write_text("s3cret-token\n")
    (tmp_path / "token").chmod(0o600)
    web = start_web(d, free_port(), "--server-key", str(keys / "vggvoxd.key"), "--key",
                    str(keys / "readers/ruth.key_secret"), token_file=tmp_path / "token")
    try:
        assert fetch(web.url + "/speakers", Cookie=web.cookie())[0] == 200
        convo = conversation(tmp_path)
        code, reply = post_voice(web, convo.enroll[sorted(convo.enroll)[0]][0].read_bytes(),
                                 "ruths-friend")
        assert code == 403 and reply["code"] == "not_allowed", reply
        assert "'enroll' needs an admin key" in reply["error"], reply
    finally:
        out = stop_web(web)
    assert "Traceback" not in out, out
