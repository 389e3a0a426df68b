"""``vggvox-client web`` in a real headless Chromium (Debian's, through chromium-driver).

The page loads, a conversation is replayed through a real daemon, and its
timeline must show the right names in the right order; a new speaker is
enrolled from a file uploaded through the page. A screenshot is kept as an
artefact (``web.png`` in the test's folder).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from daemon_proc import DaemonProcess, free_port
from speakers_fixture import conversation

from vggvox.errors import VggvoxError
from vggvox_client import live
from vggvox_client.web import parse_listen

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


def start_web(d: DaemonProcess, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                             d.conn.events, "web", "--listen", f"127.0.0.1:{port}", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.communicate()[0].decode())


def stop_web(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=10)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    return out


def test_a_token_guards_every_request(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path).start()
    (tmp_path / "token").write_text("s3cret-token\n")
    port = free_port()
    web = start_web(d, port, "--token-file", str(tmp_path / "token"))
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


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                    reason="chromium and chromium-driver are needed (make test installs them)")
def test_the_page_shows_who_speaks_and_enrolls_an_upload(tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    convo = conversation(tmp_path)
    names = list(convo.enroll)
    d = DaemonProcess(tmp_path).start()
    for name in names[:1]:  # the second speaker is enrolled through the page, below
        live.enroll(d.conn, name, convo.enroll[name], None, False, 16 << 20)
    port = free_port()
    web = start_web(d, port)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(service=Service(str(DRIVER)), options=opts)
    try:
        browser.set_page_load_timeout(30)
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: names[0] in b.find_element(By.ID, "speakers").text)

        # Enroll the second speaker from a file, through the page's form.
        browser.find_element(By.ID, "name").send_keys(names[1])
        browser.find_element(By.ID, "file").send_keys(str(convo.enroll[names[1]][0]))
        browser.find_element(By.CSS_SELECTOR, "#enroll button").click()
        wait.until(lambda b: "enrolled " + names[1] in b.find_element(By.ID, "enrolled").text)
        wait.until(lambda b: names[1] in b.find_element(By.ID, "speakers").text)

        events = live.replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                                 timeout=120, echo=False)
        source = events[0]["source"]
        row = f"tr[data-source='{source}'] .turn"
        spoken = [t[2] for t in convo.turns]
        expected = [s for i, s in enumerate(spoken) if i == 0 or s != spoken[i - 1]]

        def labels(b: webdriver.Chrome) -> list[str]:
            bars = b.find_elements(By.CSS_SELECTOR, row)
            shown = sorted((bar.location["x"], bar.get_attribute("textContent") or "")
                           for bar in bars)
            said = [text for _, text in shown]
            # Two turns of one speaker in a row (a pause between) read as one change.
            return [x for i, x in enumerate(said) if i == 0 or x != said[i - 1]]

        try:
            wait.until(lambda b: labels(b) == expected)
        except Exception:
            raise AssertionError(f"timeline {labels(browser)}, spoken {expected}") from None
        browser.save_screenshot(str(tmp_path / "web.png"))
    finally:
        browser.quit()
        out = stop_web(web)
        d.stop()
    assert (tmp_path / "web.png").stat().st_size > 1000
    assert "Traceback" not in out
