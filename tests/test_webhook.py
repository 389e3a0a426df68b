"""``vggvox-client webhook``: final turns POSTed to a real HTTP server on loopback.

The server is ``http.server`` in a thread, answering as each test scripts it.
The webhook's sender runs in a thread of the test, with short back-offs; every
wait has a deadline, and every loop stops by itself. The last test runs the real
daemon, replays a conversation and reads the posts of the real bridge process.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess, stop_process
from speakers_fixture import conversation

from vggvox.errors import VggvoxError
from vggvox.protocol.events import TurnEvent
from vggvox_client.bridges.webhook import Outcome, Poster, Webhook, follow, parse_url
from vggvox_client.cli import main
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

CLIENT = Path(sys.executable).parent / "vggvox-client"
FAST = (0.1, 0.4)
"""Back-off for the tests: 0.1 s, doubling to 0.4 s."""


@dataclass
class Post:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    code: int


class Hook:
    """A real HTTP server on 127.0.0.1: records every POST, answers the scripted
    ``(code, headers)`` first, then 200. ``down`` closes it; ``up`` opens it again on
    the same port."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]] | None = None,
                 delay: float = 0.0) -> None:
        self.answers, self.delay = list(answers or []), delay
        self.posts: list[Post] = []
        self.cond = threading.Condition()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(hook.delay)
                with hook.cond:
                    code, headers = hook.answers.pop(0) if hook.answers else (200, {})
                    hook.posts.append(Post(time.monotonic(), self.path, dict(self.headers),
                                           body, code))
                    hook.cond.notify_all()
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def down(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int, code: int = 200, timeout: float = 10.0) -> list[Post]:
        """The first ``n`` posts answered ``code``, once there are that many."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.got(code)) >= n, timeout)
            got = self.got(code)
        assert len(got) >= n, f"{len(got)} posts answered {code} after {timeout} s"
        return got[:n]

    def got(self, code: int) -> list[Post]:
        return [p for p in self.posts if p.code == code]


def body(n: int, made: float | None = None) -> tuple[bytes, float]:
    """Turn ``n``'s JSON, and the wall time it was made."""
    made = time.time() if made is None else made
    ev = TurnEvent("mic", float(n), n + 1.0, time=made, turn=n, speaker="alice",
                   confidence=0.9, final=True)
    return json.dumps(ev.payload(n)).encode(), made


@contextmanager
def sending(hook: Webhook) -> Iterator[threading.Event]:
    """The webhook's sender in a thread, stopped (and joined) at the end."""
    stop = threading.Event()
    thread = threading.Thread(target=hook.send, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the sender did not stop"


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not so after {timeout} s"
        time.sleep(0.02)


def test_each_turn_arrives_as_json_in_order() -> None:
    server = Hook()
    hook = Webhook(Poster(server.url, 2.0), backoff=FAST)
    try:
        with sending(hook):
            for n in (1, 2, 3):
                hook.put(*body(n), f"turn {n}")
            posts = server.wait(3)
    finally:
        server.down()
    assert [json.loads(p.body)["turn"] for p in posts] == [1, 2, 3]
    first = json.loads(posts[0].body)
    assert (first["type"], first["source"], first["speaker"], first["final"]) == (
        "turn", "mic", "alice", True)
    assert posts[0].path == "/hook"
    assert posts[0].headers["Content-Type"] == "application/json"
    assert posts[0].headers["User-Agent"].startswith("vggvox-webhook/")
    assert (hook.posted, hook.failed, hook.dropped) == (3, 0, 0)


def test_a_failing_server_gets_the_turn_after_back_off() -> None:
    server = Hook(answers=[(500, {}), (503, {}), (429, {})])
    hook = Webhook(Poster(server.url, 2.0), backoff=FAST)
    try:
        with sending(hook):
            hook.put(*body(1), "turn 1")
            (ok,) = server.wait(1)
    finally:
        server.down()
    times = [p.at for p in server.posts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [p.code for p in server.posts] == [500, 503, 429, 200]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.38, gaps  # 0.1, 0.2, 0.4
    assert json.loads(ok.body)["turn"] == 1
    assert (hook.posted, hook.failed, hook.dropped) == (1, 3, 0)


def test_a_server_that_is_down_then_up_gets_the_turn() -> None:
    server = Hook()
    server.down()  # connections refused, on a port kept for it
    hook = Webhook(Poster(server.url, 2.0), backoff=FAST)
    try:
        with sending(hook):
            hook.put(*body(1), "turn 1")
            until(lambda: hook.failed >= 3)
            server.up()
            (ok,) = server.wait(1)
    finally:
        server.down()
    assert json.loads(ok.body)["turn"] == 1
    assert hook.posted == 1 and hook.dropped == 0 and hook.failed >= 3


def test_news_never_history_old_turns_and_an_overflow_are_dropped() -> None:
    server = Hook()
    server.down()
    hook = Webhook(Poster(server.url, 2.0), max_age_s=0.5, max_held=2, backoff=FAST)
    try:
        with sending(hook):
            hook.put(*body(1, made=time.time() - 10.0), "turn 1")  # history already
            for n in (2, 3, 4, 5):
                hook.put(*body(n), f"turn {n}")
            until(lambda: hook.dropped >= 4)  # 1 too old; 2, 3 over the bound; ...
            time.sleep(0.6)  # ... 4 and 5 older than max_age while the server is down
            server.up()
            hook.put(*body(6), "turn 6")
            server.wait(1)
            time.sleep(0.3)  # time for an old turn to arrive, were one still held
    finally:
        server.down()
    assert [json.loads(p.body)["turn"] for p in server.posts] == [6]
    assert (hook.posted, hook.dropped) == (1, 5)


def test_a_refused_turn_is_dropped_and_not_posted_again() -> None:
    server = Hook(answers=[(400, {})])
    hook = Webhook(Poster(server.url, 2.0), backoff=FAST)
    try:
        with sending(hook):
            hook.put(*body(1), "turn 1")
            hook.put(*body(2), "turn 2")
            (ok,) = server.wait(1)
    finally:
        server.down()
    assert [p.code for p in server.posts] == [400, 200]
    assert json.loads(ok.body)["turn"] == 2
    assert (hook.posted, hook.failed, hook.dropped) == (1, 1, 1)


def test_redirects_stay_on_the_host_and_keep_the_body() -> None:
    other = Hook()
    server = Hook(answers=[(307, {"Location": "/moved"}), (200, {}),
                           (307, {"Location": f"http://127.0.0.1:{other.port}/hook"}),
                           (302, {"Location": "/moved"})])
    post = Poster(server.url, 2.0)
    try:
        assert post(body(1)[0]) == Outcome(True)  # 307 to the same host: followed, POST
        assert [(p.path, p.code) for p in server.posts] == [("/hook", 307), ("/moved", 200)]
        assert json.loads(server.posts[1].body)["turn"] == 1
        refused = post(body(2)[0])  # to another port: another origin
        assert not refused.ok and not refused.retry and "307" in refused.why
        assert not post(body(3)[0]).ok  # 302 would turn the POST into a GET
        assert other.posts == []
    finally:
        server.down()
        other.down()


def test_a_server_that_does_not_answer_times_out_and_is_retried() -> None:
    server = Hook(delay=1.0)
    post = Poster(server.url, 0.3)
    try:
        start = time.monotonic()
        out = post(body(1)[0])
        assert not out.ok and out.retry and time.monotonic() - start < 0.9, out
    finally:
        server.down()


class Feed:
    """A connection whose one subscription gives ``maps``, then stops the bridge."""

    def __init__(self, maps: list[dict[str, object]], stop: threading.Event) -> None:
        self.maps, self.stop = maps, stop

    def subscribe(self, topics: list[str] | None = None) -> Feed:
        return self

    def receive(self, sock: object, timeout: float) -> dict[str, object] | None:
        if not self.maps:
            self.stop.set()
            return None
        return self.maps.pop(0)

    def close(self) -> None:
        pass


def test_only_final_turns_go_and_a_gap_in_seq_is_logged_as_loss(
        caplog: pytest.LogCaptureFixture) -> None:
    def turn(seq: int, n: int, final: bool) -> dict[str, object]:
        return TurnEvent("mic", 0.0, 1.0, turn=n, speaker="alice", final=final).payload(seq)

    first = turn(3, 1, True)
    maps = [{"v": 1, "seq": 1, "type": "speech.start", "source": "mic", "t_start": 0.0,
             "t_end": 0.0}, turn(2, 1, False), first,
            {"v": 1, "seq": 4, "type": "a.topic.of.later", "source": "mic"},  # skipped
            turn(6, 2, True)]  # 5 was lost
    stop, put = threading.Event(), []
    follow(Feed(maps, stop), lambda *a: put.append(a), stop)  # type: ignore[arg-type]
    assert [(json.loads(body)["turn"], what) for body, _, what in put] == [
        (1, "turn 1 of mic"), (2, "turn 2 of mic")]
    assert json.loads(put[0][0]) == first and put[0][1] == first["time"]
    assert "1 events from vggvoxd lost so far" in caplog.text


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "hook.example.com",
                                 "http://127.0.0.1:99999/", "http://u:pw@example.com/",
                                 "http://example.com/a b"])
def test_a_bad_url_is_one_line_and_status_2(url: str, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    with pytest.raises(VggvoxError, match=r"^--url must be http\(s\)://HOST"):
        parse_url(url)
    assert main(["webhook", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vggvox-client: error: --url must be") and err.count("\n") == 1, err


def test_the_bridge_posts_a_replayed_conversations_final_turns(tmp_path: Path) -> None:
    """Real daemon, real bridge process, real server: every post is a final turn, and
    their speakers are the conversation's, in order."""
    convo = conversation(tmp_path)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    server = Hook()
    bridge = subprocess.Popen([str(CLIENT), "--control", d.conn.control, "--events",
                               d.conn.events, "webhook", "--url", server.url,
                               "--log-level", "INFO"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, 16 << 20)
        time.sleep(0.5)  # the bridge's subscription reaches the publisher
        events = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
        finals = [e for e in events if e["type"] == "turn" and e["final"]]
        assert len(finals) >= 2, events
        posts = server.wait(len(finals), timeout=20)
    finally:
        out = stop_process(bridge)
        server.down()
        d.stop()
    assert bridge.returncode == 0 and "Traceback" not in out, out
    got = [json.loads(p.body) for p in posts]
    assert got == finals  # the same maps as listen --json, in order
    said = [t["speaker"] for t in got]
    spoken = [t[2] for t in convo.turns]
    assert [s for i, s in enumerate(said) if i == 0 or s != said[i - 1]] == [
        s for i, s in enumerate(spoken) if i == 0 or s != spoken[i - 1]]
    assert f"webhook: {len(finals)} turns posted, 0 posts failed, 0 turns dropped" in out
