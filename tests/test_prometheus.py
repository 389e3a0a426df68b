"""The daemon's Prometheus endpoint, scraped over real HTTP during a replay.

The counters must move as the events do: windows decided as ``speaker``
events, turns decided as final ``turn`` events, one latency observation per
window. Settings are checked at start with errors naming the key.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess, free_port
from prometheus_client.parser import text_string_to_metric_families
from speakers_fixture import conversation

from vggvox.modelcard import DEFAULT_MODEL, load_card, resolve_card
from vggvox_client import live
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
            live.enroll(d.conn, name, files, None, False, 16 << 20)
        before = scrape(port)
        events = live.replay_one(d.conn, convo.stream, realtime=False, as_json=True,
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
