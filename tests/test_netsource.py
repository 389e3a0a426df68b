"""Network audio sources (issue 25, section 1): real streams on loopback, muxed by
FFmpeg (PyAV), read by a real daemon with real models.

- an HTTP server of a live Ogg/Opus stream, and an HTTPS one (a self-signed certificate,
  its CA given as ``ca_file``): the enrolled speaker is named; the HTTP server
  goes away mid-stream (the source is ``lost``, logged once), comes back on its port
  (``running`` again) and the other speaker's turn is named;
- RTP (L16 at 16 kHz) to a local UDP port, described by an SDP file: named too;
- RTSP pushed by FFmpeg's rtsp muxer to the daemon in listen mode: named; the
  publisher goes away and another comes: lost, then the speaker named again;
- the states in ``status``, the status events and the metrics;
- an RTSP camera that refuses: ``waiting``, retried with back-off, its password in no
  log line and no status reply; one pulled from (``rtspserver``) that appears, goes away
  and comes back: ``running``, ``lost``, ``running``;
- RTP and MPEG-TS to a UDP port, and MPEG-TS to a multicast group on loopback;
- URLs checked when the config is read, one line naming the key.

HTTPS certificates' verification: tests/test_nettls.py.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import yaml
from daemon_proc import DaemonProcess, free_port
from netstreams import (
    HttpStream,
    RtpStream,
    RtspPublisher,
    UdpSender,
    multicast_on_loopback,
    self_signed,
)
from rtspserver import RtspServer
from speakers_fixture import Conversation

from vggvox.audio import load_audio, to_int16
from vggvox.errors import ConfigError
from vggvox_client.enroll import enroll
from vggvoxd import config, netsource, neturl
from vggvoxd.livesources import check_specs, specs
from vggvoxd.netsource import NetSource, Resampler
from vggvoxd.source_schemes import check_source

MAX_BYTES = 16 * 1024 * 1024


@pytest.mark.parametrize("uri, why", [
    ("rtsp://", "names no host"),
    ("rtsp:cam/stream", "must be rtsp://HOST"),
    ("http://cam:99999/a", "its port must be a number from 1 to 65535"),
    ("rtp://127.0.0.1", "names no port"),
    ("http://cam/a b", "has a space"),
])
def test_a_malformed_url_is_one_line_naming_the_key(uri: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"'sources\[0\]\.uri' .*: {re.escape(why)}"):
        config.parse({"sources": [{"name": "cam", "uri": uri}]})


def test_a_password_is_shown_nowhere() -> None:
    assert neturl.shown("rtsp://admin:hunter2@cam:554/s?token=abc&ch=1") == \
        "rtsp://admin:***@cam:554/s?token=***&ch=1"
    with pytest.raises(ConfigError) as e:
        config.parse({"sources": [{"name": "cam", "uri": "rtmp://admin:hunter2@cam/s"}]})
    assert "hunter2" not in str(e.value)
    (spec,) = specs(config.parse({}), "rtsp://admin:hunter2@cam/s")
    assert spec.name == "rtsp://admin:***@cam/s" and spec.uri == "rtsp://admin:hunter2@cam/s"
    with pytest.raises(ValueError, match=r"^--source rtsp://admin:\*\*\*@cam:0/s: its port"):
        check_source("rtsp://admin:hunter2@cam:0/s")
    spec = config.parse({"sources": [{"name": "cam", "uri": "rtsp://cam/s",
                                      "options": {"rtsp_transport": "udp"}}]}).sources[0]
    assert spec.options == (("rtsp_transport", "udp"),)
    with pytest.raises(ConfigError, match=r"'sources\[0\]\.options' are a network stream's"):
        config.parse({"sources": [{"name": "a", "uri": "stdin", "options": {"x": 1}}]})


class Heard:
    """Every event of a subscription, kept: a wait for one source's never loses
    another's."""

    def __init__(self, d: DaemonProcess) -> None:
        self.d = d
        self.sub = d.conn.subscribe(["turn", "status"])
        self.events: list[dict] = []

    def wait(self, source: str, what: str, timeout: float, **fields: Any) -> dict:
        """The first event of ``source`` of type ``what`` with ``fields``, from the
        start of the subscription."""
        def match(ev: dict) -> bool:
            return (ev["source"] == source and ev["type"] == what
                    and all(ev.get(k) == v for k, v in fields.items()))

        deadline = time.monotonic() + timeout
        while True:
            found = next((ev for ev in self.events if match(ev)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                seen = [(e["source"], e["type"], e.get("speaker"), e.get("state"))
                        for e in self.events]
                raise AssertionError(f"{source}: no {what} {fields} in {timeout} s: {seen}\n"
                                     f"{self.d.output()}")
            ev = self.d.conn.receive(self.sub, 0.2)
            if ev is not None:
                ev["received"] = time.monotonic()
                self.events.append(ev)

    def forget(self) -> None:
        self.events.clear()


def test_network_streams_name_the_speaker_and_come_back(tmp_path: Path,
                                                        convo: Conversation) -> None:
    x = to_int16(load_audio(convo.stream))
    (a0, a1, alice), (b0, b1, bob) = convo.turns[0], convo.turns[1]
    first, second = x[int(a0 * 16000):int(a1 * 16000)], x[int(b0 * 16000):int(b1 * 16000)]
    web, rtp = HttpStream(first), RtpStream(second)
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    cert = self_signed(tmp_path)
    tls = HttpStream(first, tls=cert)
    sdp = tmp_path / "rtp.sdp"
    sdp.write_text(rtp.sdp())
    cam = RtspPublisher(f"rtsp://127.0.0.1:{free_port()}/live", second)
    dead = f"rtsp://viewer:hunter2@127.0.0.1:{free_port()}/stream1"
    cfg = tmp_path / "vggvoxd.yaml"
    metrics = f"http://127.0.0.1:{(port := free_port())}/metrics"
    cfg.write_text(yaml.safe_dump({"status": {"interval_s": 0.5},
                                   "metrics": {"listen": f"127.0.0.1:{port}"}, "sources": [
        {"name": "web", "uri": web.url}, {"name": "rtp", "uri": f"sdp:{sdp}"},
        {"name": "cam", "uri": cam.url, "options": {"rtsp_flags": "listen"}},
        {"name": "dead", "uri": dead},
        {"name": "tls", "uri": tls.url, "options": {"ca_file": str(cert[0])}}]}))
    d = DaemonProcess(tmp_path, source=None, args=["--config", str(cfg)])
    again: HttpStream | None = None
    cam_again: RtspPublisher | None = None
    try:
        rtp.start()
        d.start()
        cam.start()
        for name, files in convo.enroll.items():
            enroll(d.conn, name, files, None, False, MAX_BYTES)
        heard = Heard(d)
        time.sleep(0.3)
        for stream in (web, rtp, cam, tls):
            stream.go.set()
        heard.wait("web", "turn", 30, speaker=alice)
        heard.wait("tls", "turn", 15, speaker=alice)
        heard.wait("rtp", "turn", 15, speaker=bob)
        heard.wait("cam", "turn", 15, speaker=bob)
        heard.forget()
        web.stop()
        cam.stop()
        lost = heard.wait("web", "status", 10, state="lost")["received"]
        heard.wait("cam", "status", 10, state="lost")
        with urllib.request.urlopen(metrics, timeout=5) as r:
            scraped = r.read().decode()
        time.sleep(1.0)  # away a while: the source backs off
        again = HttpStream(second, port=web.port)
        cam_again = RtspPublisher(cam.url, first).start()
        for stream in (again, cam_again):
            stream.go.set()
        back = heard.wait("web", "status", 15, state="running")["received"]
        heard.wait("web", "turn", 20, speaker=bob)
        heard.wait("cam", "turn", 20, speaker=alice)
        status = d.conn.request("status", timeout=5)
    finally:
        d.stop()
        for server in (web, again, rtp, cam, cam_again, tls):
            if server is not None:
                server.stop()
    log = d.log.read_text()
    print(f"web: back {back - lost:.1f} s after it was lost (away 1 s)")
    for name, state in (("web", "lost"), ("cam", "lost"), ("dead", "waiting"),
                        ("rtp", "running")):
        assert f'vggvox_source_state{{source="{name}",state="{state}"}} 1.0' in scraped
    assert status["sources"]["dead"]["state"] == "waiting"
    assert status["sources"]["web"]["state"] == "running"
    assert "hunter2" not in log and "hunter2" not in str(status)
    assert len(re.findall(r"dead: cannot play rtsp://viewer:\*\*\*@", log)) == 1, log
    for name in ("web", "cam"):
        assert len(re.findall(rf"{name}: stream .* lost", log)) == 1, log
        assert re.search(rf"{name}: stream .* back after", log), log


def test_a_refusing_server_is_retried_with_back_off_logged_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Each wait twice the last, up to the longest; one WARNING for the whole outage;
    a stop ends the thread at once, however long the wait it is in."""
    monkeypatch.setattr(netsource, "BACKOFF_S", (0.05, 0.2))
    caplog.set_level(logging.DEBUG, logger="vggvoxd.netsource")
    source = NetSource(f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/s", "cam")
    source.start(lambda block: None)
    time.sleep(1.0)
    assert source.link == "waiting"
    t0 = time.monotonic()
    source.stop()
    assert time.monotonic() - t0 < 0.5 and source.link is None
    waits = [float(m) for m in re.findall(r"next try in ([\d.]+) s", caplog.text)]
    assert waits[:4] == [0.05, 0.1, 0.2, 0.2], waits
    assert [r.levelname for r in caplog.records if r.levelno >= logging.INFO] == ["WARNING"]
    assert "hunter2" not in caplog.text and "admin:***@" in caplog.text


def test_after_a_healthy_spell_an_outage_backs_off_afresh(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Refused until the waits reach the longest; the server comes, plays past the
    healthy period and goes: the next wait is the first again, not the longest."""
    monkeypatch.setattr(netsource, "BACKOFF_S", (0.05, 0.2))
    monkeypatch.setattr(netsource, "HEALTHY_S", 0.3)
    caplog.set_level(logging.DEBUG, logger="vggvoxd.netsource")
    port = free_port()
    source = NetSource(f"http://127.0.0.1:{port}/live.ogg", "web")
    source.start(lambda block: None)
    server: HttpStream | None = None
    try:
        time.sleep(0.6)  # 0.05, 0.1, 0.2, 0.2: at the longest
        server = HttpStream(np.zeros(16000, np.int16), port=port)
        wait_link(source, "running")
        time.sleep(0.6)
        caplog.clear()
        server.stop()
        wait_link(source, "lost")
        time.sleep(0.3)
    finally:
        source.stop()
        if server is not None:
            server.stop()
    waits = [float(m) for m in re.findall(r"next try in ([\d.]+) s", caplog.text)]
    assert waits[:2] == [0.05, 0.1], waits


def wait_link(source: NetSource, link: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while source.link != link:
        assert time.monotonic() < deadline, f"{source.name} never {link}: {source.link}"
        time.sleep(0.05)


def test_a_camera_pulled_over_rtsp_is_waited_for_lost_and_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An RTSP camera (``rtspserver``: FFmpeg has no server to pull from) that refuses
    at first: ``waiting``; it appears: ``running``, the tone at 16 kHz; it goes away:
    ``lost``; it comes back on its port: ``running`` again."""
    monkeypatch.setattr(netsource, "BACKOFF_S", (0.05, 0.2))
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.int16)
    port = free_port()
    source = NetSource(f"rtsp://viewer:pw@127.0.0.1:{port}/stream1", "cam")
    got: list[np.ndarray] = []
    source.start(got.append)
    servers: list[RtspServer] = []
    try:
        time.sleep(0.3)
        assert source.link == "waiting"
        servers.append(RtspServer(tone, port))
        wait_link(source, "running")
        time.sleep(1.0)
        servers[-1].stop()
        wait_link(source, "lost")
        heard = sum(map(len, got))
        servers.append(RtspServer(tone, port))
        wait_link(source, "running")
        time.sleep(0.3)
    finally:
        source.stop()
        for server in servers:
            server.stop()
    assert sum(map(len, got)) > heard >= 12000
    spectrum = np.abs(np.fft.rfft(np.concatenate(got)[:12000].astype(np.float32)))
    assert abs(int(np.argmax(spectrum)) * 16000 / 12000 - 440) <= 3


@pytest.mark.parametrize("kind", ["rtp", "udp", "multicast"])
def test_udp_streams_arrive_at_16_khz(kind: str) -> None:
    """RTP of G.711 at 8 kHz (no SDP: a static payload type) and MPEG-TS of MP2, to a
    port or to a multicast group joined on loopback (``localaddr``): resampled to 16 kHz
    mono, the tone at its pitch."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.int16)
    sender = UdpSender(kind, tone)
    if kind == "multicast" and not multicast_on_loopback(sender.host, sender.port):
        pytest.skip("multicast on the loopback interface does not work here")
    source = NetSource(sender.url, kind, sender.options)
    got: list[np.ndarray] = []
    source.start(got.append)
    try:
        sender.start()
        deadline = time.monotonic() + 10
        while sum(map(len, got)) < 16000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert source.link == "running"
    finally:
        source.stop()  # first: the packets still coming end its read at once
        sender.stop()
    x = np.concatenate(got).astype(np.float32)
    assert len(x) >= 16000, len(x)
    spectrum = np.abs(np.fft.rfft(x[-16000:] * np.hanning(16000)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2


def test_frames_of_changing_rates_all_come_out_at_16_khz() -> None:
    """An MP3 stream may change its rate between frames: each kind gets its own."""
    resample, out = Resampler(), []
    for rate, layout in ((8000, "mono"), (44100, "stereo"), (8000, "mono")):
        x = (8000 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.int16)
        planes, fmt = (x[None, :], "s16") if layout == "mono" else (np.stack([x, x]), "s16p")
        frame = av.AudioFrame.from_ndarray(planes, format=fmt, layout=layout)
        frame.sample_rate = rate
        out += resample(frame)
    assert abs(sum(map(len, out)) - 3 * 16000) < 200


def test_an_unreadable_session_description_is_one_line() -> None:
    settings = config.parse({"sources": [{"name": "i", "uri": "sdp:/no/such.sdp"}]})
    with pytest.raises(ValueError, match=r"^source 'i' sdp:/no/such\.sdp: cannot read the "
                                         r"session description: No such file"):
        check_specs(settings, "mic")


def test_every_scheme_is_in_the_help() -> None:
    from vggvoxd.source_schemes import uri_forms

    assert uri_forms().endswith("rtsp://HOST/PATH, rtp://HOST:PORT, sdp:PATH, "
                                "udp://HOST:PORT, http://HOST/PATH or https://HOST/PATH")
