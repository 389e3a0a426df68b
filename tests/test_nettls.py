"""HTTPS network sources (issue 25): a real HTTPS server on loopback with a
self-signed certificate made at test time (``openssl``), read by ``NetSource``.

FFmpeg takes any certificate unless told (its ``tls_verify`` is 0): the daemon tells it
to verify, against the system's CA bundle or a source's own ``ca_file``. A self-signed
server is refused by default, said once with what to do; it plays with its certificate
as ``ca_file``, or with ``tls_verify: 0``; a certificate for another name only with
``verifyhost``. (The daemon naming a speaker over HTTPS is in
tests/test_netsource.py's daemon test.) An HLS playlist's segments are not verified
(FFmpeg gives their fetches no TLS options): the source says so.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from netstreams import FileServer, HttpStream, hls_files, self_signed

from vggvoxd import netsource, neturl
from vggvoxd.netsource import NetSource


def tls_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key; the test skips without the
    ``openssl`` command to make them."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    return self_signed(folder)


def test_https_is_verified_against_the_system_bundle_unless_told(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """FFmpeg takes any certificate unless told (``tls_verify`` 0): the daemon tells it
    to verify, against the system's bundle (SSL_CERT_FILE first) or the source's own."""
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert neturl.options("https://cam/a", {}) == {
        "tls_verify": "1", "ca_file": str(bundle), "protocol_whitelist": neturl.PROTOCOLS["https"]}
    assert neturl.options("http://cam/a", {"ca_file": "/my.pem"})["ca_file"] == "/my.pem"
    assert "ca_file" not in neturl.options("https://cam/a", {"cafile": "/my.pem"})
    assert neturl.options("https://cam/a", {"tls_verify": "0"})["tls_verify"] == "0"
    assert "tls_verify" not in neturl.options("rtsp://cam/a", {})


def test_a_self_signed_https_server_is_refused_unless_its_ca_is_given(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """Sources at once: by default (the system's CAs) the server is refused, said once
    with what to do; with its certificate as ``ca_file`` it plays, the tone at 16 kHz;
    in the system's bundle (SSL_CERT_FILE) too; with ``tls_verify: 0`` it plays
    unverified; a ``ca_file`` that is not there is named. A trusted certificate for
    another name is refused at 127.0.0.1, and plays with ``verifyhost`` naming it."""
    monkeypatch.setattr(netsource, "BACKOFF_S", (0.2, 0.4))
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.int16)
    cert, key = tls_pair(tmp_path)
    server = HttpStream(tone, tls=(cert, key))
    elsewhere = self_signed(tmp_path, "cam.test")  # a certificate for another name
    impostor = HttpStream(tone, tls=elsewhere)
    for stream in (server, impostor):
        stream.go.set()
    got: dict[str, list[np.ndarray]] = {}
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    sources = {name: NetSource(server.url, name, options) for name, options in (
        ("system", {}), ("own", {"ca_file": str(cert)}), ("any", {"tls_verify": "0"}),
        ("missing", {"ca_file": str(tmp_path / "no.pem")}))}
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # as if the system's CAs had signed it
    sources["bundled"] = NetSource(server.url, "bundled")
    trusted = {"ca_file": str(elsewhere[0])}
    sources["misnamed"] = NetSource(impostor.url, "misnamed", trusted)
    sources["renamed"] = NetSource(impostor.url, "renamed", {**trusted, "verifyhost": "cam.test"})
    try:
        for name, source in sources.items():
            source.start(got.setdefault(name, []).append)
        deadline = time.monotonic() + 10
        while sum(map(len, got["own"])) < 16000 and time.monotonic() < deadline:
            time.sleep(0.1)
        links = {name: source.link for name, source in sources.items()}
    finally:
        for source in sources.values():
            source.stop()
        server.stop()
        impostor.stop()
    assert links == {"system": "waiting", "own": "running", "any": "running",
                     "missing": "waiting", "bundled": "running", "misnamed": "waiting",
                     "renamed": "running"}, links
    assert not got["system"] and not got["missing"] and got["any"] and got["bundled"]
    x = np.concatenate(got["own"]).astype(np.float32)
    assert len(x) >= 16000, len(x)
    spectrum = np.abs(np.fft.rfft(x[-16000:] * np.hanning(16000)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 2
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m for m in warned if m.startswith("system:")] == [
        f"system: cannot play {server.url} yet (Input/output error; if the server's "
        "certificate is not trusted, give its CA as the source's options.ca_file); "
        "retrying with back-off"], warned
    assert any(f"options.ca_file {tmp_path / 'no.pem'} cannot be read" in m
               for m in warned), warned


def test_an_hls_playlist_over_https_says_its_segments_are_not_verified(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    """FFmpeg verifies the playlist's server, but gives the segments' fetches no TLS
    options: the source plays, and says so once."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.int16)
    cert = tls_pair(tmp_path)
    folder = tmp_path / "hls"
    folder.mkdir()
    hls_files(folder, tone)
    server = FileServer(folder, cert)
    source = NetSource(f"https://127.0.0.1:{server.port}/live.m3u8", "hls",
                       {"ca_file": str(cert[0])})
    got: list[np.ndarray] = []
    source.start(got.append)
    try:
        deadline = time.monotonic() + 10
        while sum(map(len, got)) < 16000 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        source.stop()
        server.stop()
    assert sum(map(len, got)) >= 16000
    warned = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and "HLS" in r.getMessage()]
    assert warned == [f"hls: https://127.0.0.1:{server.port}/live.m3u8 is HLS: its "
                      "playlist's certificate is verified, its segments' are not (FFmpeg "
                      "gives them no TLS options)"], warned
