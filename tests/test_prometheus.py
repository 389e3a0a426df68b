"""The daemon's Prometheus endpoint, scraped over real HTTP during a replay.

The counters must move as the events do: windows decided as ``speaker``
events, turns decided as final ``turn`` events, one latency observation per
window. Settings are checked at start with errors naming the key.
"""

from __future__ import annotations

import http.client
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess, free_port
from prometheus_client.parser import text_string_to_metric_families
from speakers_fixture import conversation

from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one
from vggvoxd import config
from vggvoxd.config import ConfigError


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_counters_move_as_the_events_do(tmp_path: Path) -> None:
    convo = conversation(tmp_path)
    port = free_port()
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"metrics": {"listen": f"127.0.0.1:{port}"}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    try:
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, 16 << 20)
        before = scrape(port)
        events = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
        after = scrape(port)
    finally:
        code, _ = d.stop()
    assert code == 0, d.output()
    windows = sum(e["type"] == "speaker" for e in events)
    turns = len({e["turn"] for e in events if e["type"] == "turn"})
    assert windows >= 10 and turns >= 2

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("vggvox_windows_decided_total", source="replay") == windows
    assert moved("vggvox_turns_decided_total", source="replay") == turns
    assert moved("vggvox_decision_latency_seconds_count") == windows
    assert moved("vggvox_embed_seconds_total") > 0
    assert after[("vggvox_enrolled_speakers", ())] == 2
    assert after[("vggvox_source_state", (("source", "stdin"), ("state", "running")))] == 1
    card = load_card(resolve_card(DEFAULT_MODEL))
    assert after[("vggvox_build_info", (("model", card.tag), ("sha256", card.sha256),
                                        ("version", __import__("vggvox").__version__)))] == 1
    assert after[("vggvox_stage_restarts_total", (("stage", "embedder"),))] == 0
    assert after[("vggvox_dropped_windows_total", (("source", "stdin"),))] == 0


def test_the_collector_shows_its_readings_and_nothing_else() -> None:
    """The metrics see the runtime through ``Readings`` alone (a function per reading),
    not the daemon: a hand-made one is all a collector needs."""
    from prometheus_client import CollectorRegistry, generate_latest

    from vggvoxd.guard import Guard
    from vggvoxd.prometheus import DaemonCollector, Readings
    from vggvoxd.streamthread import StreamCounts

    guard = Guard("embedder", print)
    guard.failures = 2
    readings = Readings("m@1", "ab12", sources=lambda: [
        ("kitchen", "running", StreamCounts(windows=5, turns=2, dropped_samples=160,
                                            dropped_windows=1, overflows=3))],
        replays=lambda: (7, 3, 40), embed_s=lambda: 1.5, dropped_events=lambda: 4,
        queued=lambda: 2, speakers=lambda: 9, guards=lambda: {"embedder": guard})
    registry = CollectorRegistry()
    registry.register(DaemonCollector(readings))  # type: ignore[arg-type]
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in
           text_string_to_metric_families(generate_latest(registry).decode())
           for s in fam.samples}
    kitchen, replay = (("source", "kitchen"),), (("source", "replay"),)
    assert got[("vggvox_windows_decided_total", kitchen)] == 5
    assert got[("vggvox_turns_decided_total", replay)] == 3
    assert got[("vggvox_dropped_samples_total", kitchen)] == 160
    assert got[("vggvox_dropped_samples_total", replay)] == 40
    assert got[("vggvox_dropped_windows_total", kitchen)] == 1
    assert got[("vggvox_input_overflows_total", kitchen)] == 3
    assert got[("vggvox_source_state", (("source", "kitchen"), ("state", "running")))] == 1
    assert got[("vggvox_embed_seconds_total", ())] == 1.5
    assert got[("vggvox_dropped_events_total", ())] == 4
    assert got[("vggvox_queue_depth", ())] == 2
    assert got[("vggvox_enrolled_speakers", ())] == 9
    assert got[("vggvox_stage_restarts_total", (("stage", "embedder"),))] == 2
    assert got[("vggvox_build_info", (("model", "m@1"), ("sha256", "ab12"),
                                      ("version", __import__("vggvox").__version__)))] == 1


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "vggvoxd.yaml"
        cfg.write_text(yaml.safe_dump({"metrics": {"listen": f"127.0.0.1:{port}"}}))
        run = subprocess.run([sys.executable, "-m", "vggvoxd.main", "--config", str(cfg),
                              "--source", "stdin", "--store", str(tmp_path / "v.db"),
                              "--control", f"ipc://{tmp_path}/c.sock",
                              "--events", f"ipc://{tmp_path}/e.sock"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    out = run.stdout + run.stderr
    assert f"metrics.listen 127.0.0.1:{port}: cannot listen there" in out
    assert "Traceback" not in out


@pytest.mark.parametrize(("metrics", "message"), [
    ({"listen": "9464"}, "'metrics.listen' must be HOST:PORT"),
    ({"listen": "127.0.0.1:99999"}, "'metrics.listen' must be HOST:PORT"),
    ({"listen": "0.0.0.0:9464"}, "is not loopback: the endpoint has no authentication"),
    ({"listen": "192.168.1.5:9464"}, "set 'metrics.public: true'"),
    ({"listen": "127.0.0.1:9464", "public": "yes"}, "'metrics.public' must be"),
])
def test_bad_metrics_settings_name_the_key(metrics: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.parse({"metrics": metrics})


def test_loopback_or_public_on_purpose_is_accepted() -> None:
    assert config.parse({"metrics": {"listen": "[::1]:9464"}}).metrics.address == ("::1", 9464)
    assert config.parse({"metrics": {"listen": "localhost:9464"}}).metrics.listen
    assert config.parse({"metrics": {"listen": "0.0.0.0:9464", "public": True}}).metrics.public


# ------------------------------------------------------------------ a flood of the port


def proc_figure(pid: int, key: str) -> int:
    """Threads, or open files (key "fds"), of a process now."""
    if key == "fds":
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                if ln.startswith(key + ":"))
    return int(line.split()[1])


def idle(port: int, n: int) -> list[socket.socket]:
    """``n`` TCP connections to the port that never send a byte."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        out.append(s)
    return out


def closed_by_server(s: socket.socket, within: float) -> bool:
    """The server closed ``s`` (EOF or reset) within ``within`` seconds."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def scrape_within(port: int, seconds: float) -> dict:
    """Scrape until it is served (a full endpoint closes new connections at once)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return scrape(port)
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def metrics_daemon(tmp: Path, files: int | None = None) -> tuple[DaemonProcess, int]:
    port = free_port()
    cfg = tmp / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"metrics": {"listen": f"127.0.0.1:{port}"}}))
    d = DaemonProcess(tmp, args=["--config", str(cfg)])
    if files is not None:  # both limits: the daemon cannot raise its own
        d.argv = ["prlimit", f"--nofile={files}:{files}", *d.argv]
    return d.start(), port


def test_the_metrics_port_serves_8_at_once_and_cuts_idle_ones(tmp_path: Path) -> None:
    """At the limit (8 idle connections) each is held; past it the 9th is closed at
    once; an idle one is cut after 5 s without its request, and scrapes work again."""
    from vggvoxd.prometheus_http import HEADER_TIMEOUT_S, MAX_CONNECTIONS

    d, port = metrics_daemon(tmp_path)
    held: list[socket.socket] = []
    try:
        held = idle(port, MAX_CONNECTIONS)
        time.sleep(0.3)  # all accepted
        assert not any(closed_by_server(s, 0.05) for s in held), "held at the limit"
        extra = idle(port, 1)[0]
        t0 = time.monotonic()
        assert closed_by_server(extra, 2) and time.monotonic() - t0 < 1, "past the limit"
        extra.close()
        # One trickles its request line and never ends its headers: cut all the same.
        held[0].sendall(b"GET /metrics HTTP/1.1\r\n")
        assert all(closed_by_server(s, HEADER_TIMEOUT_S + 2) for s in held)
        took = time.monotonic() - t0
        assert HEADER_TIMEOUT_S - 1 < took < HEADER_TIMEOUT_S + 2, took
        assert scrape(port)[("vggvox_enrolled_speakers", ())] == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5) as r:
            pytest.fail(f"served {r.status}")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    finally:
        for s in held:
            s.close()
        code, _ = d.stop()
    assert code == 0
    assert "metrics: 8 connections at once: closing new ones" in d.output()


def test_a_metrics_flood_under_1024_files_leaves_the_daemon_answering(
        tmp_path: Path, voices: dict[str, list[Path]]) -> None:
    """Issue 20: 1,000 idle connections to the metrics port took a daemon limited to
    1,024 files to 1,022 files and 1,011 threads; enroll then failed ("unable to open
    database file") and 50 control connections aborted it. Now its files and threads
    hardly move, it enrolls, and 50 control connections are answered."""
    from floods import ask_status, dealer

    from vggvoxd.prometheus_http import FILES, HEADER_TIMEOUT_S, MAX_CONNECTIONS

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    d, port = metrics_daemon(tmp_path, files=1024)
    assert d.proc is not None
    pid = d.proc.pid  # prlimit exec'd the daemon: the same process
    assert "Max open files            1024                 1024" in \
        Path(f"/proc/{pid}/limits").read_text()
    fds0, threads0 = proc_figure(pid, "fds"), proc_figure(pid, "Threads")
    held: list[socket.socket] = []
    clients = []
    try:
        held = idle(port, 1000)
        time.sleep(0.5)
        fds, threads = proc_figure(pid, "fds"), proc_figure(pid, "Threads")
        print(f"1,000 idle metrics connections: files {fds0} -> {fds}, threads "
              f"{threads0} -> {threads}")
        assert fds <= fds0 + FILES and threads <= threads0 + MAX_CONNECTIONS
        reply = enroll(d.conn, "alice", voices["alice"], None, False, 16 << 20)
        assert reply["action"] == "added"
        assert [s["name"] for s in d.conn.request("list")["speakers"]] == ["alice"]
        clients = [dealer(d.conn.control) for _ in range(50)]
        answers = [ask_status(c, 5) for c in clients]
        assert all(a is not None and a["ok"] for a in answers)
        # The first 8 idle ones hold every slot until their 5 s are up: then it serves.
        served = scrape_within(port, HEADER_TIMEOUT_S + 3)
        assert served[("vggvox_source_state", (("source", "stdin"), ("state", "running")))] == 1
    finally:
        for c in clients:
            c.close()
        for s in held:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        code, _ = d.stop()
    assert code == 0, d.output()
    assert "Traceback" not in d.output()


def test_the_connection_cap_keeps_the_metrics_files_aside() -> None:
    from vggvoxd.connlimit import RESERVE, cap_for
    from vggvoxd.prometheus_http import FILES

    assert cap_for(1024, 30) == (1024 - 30 - RESERVE - FILES) // 2


class SlowInt(int):
    """An int whose addition takes 5 ms: a ``+= 1`` that is not under a lock then loses
    counts whenever two threads add at once (the GIL alone hides it only by luck:
    another interpreter, or a free-threaded one, shows it without this)."""

    def __add__(self, other: object) -> SlowInt:
        time.sleep(0.005)
        return SlowInt(int(self) + int(other))  # type: ignore[call-overload]


def test_the_servers_counters_lose_no_count_under_concurrent_connections() -> None:
    """`timed_out += 1` ran in every connection's thread without a lock. 5 rounds of 8
    connections closed at once without a request: each is counted, exactly."""
    from vggvoxd.prometheus_http import MAX_CONNECTIONS, MetricsHTTP

    server = MetricsHTTP(("127.0.0.1", free_port()), lambda: (b"", "text/plain"))
    server.start()
    server.timed_out = SlowInt(0)
    try:
        for n in range(1, 6):
            conns = idle(server.address[1], MAX_CONNECTIONS)
            time.sleep(0.3)  # all accepted, each in its thread, waiting for a request
            for c in conns:
                c.close()
            deadline = time.monotonic() + 5  # counted (a lost count never comes)...
            while server.timed_out < n * MAX_CONNECTIONS and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)  # ...and each slot given back, just after its count
    finally:
        server.stop()
    assert server.timed_out == 5 * MAX_CONNECTIONS and server.turned_away == 0
