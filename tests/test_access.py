"""Who may use the daemon: CURVE keys on TCP, roles, group-shared ipc sockets, exposure.

Real daemon processes, real sockets, real key files; the group test creates
real users (root only)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from daemon_proc import DaemonProcess, free_port

from vggvox.protocol.keys import keygen
from vggvox_client.cli import main as client_main
from vggvox_client.connection import ClientError, Connection
from vggvoxd import config
from vggvoxd.access import check_exposure


def test_keygen_writes_a_public_and_a_private_key(tmp_path: Path, capsys) -> None:
    assert client_main(["keygen", str(tmp_path / "k"), "vggvoxd"]) == 0
    public, secret = tmp_path / "k/vggvoxd.key", tmp_path / "k/vggvoxd.key_secret"
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret key" in capsys.readouterr().out
    assert client_main(["keygen", str(tmp_path / "k"), "vggvoxd"]) == 2, "never overwrites"
    assert "exists" in capsys.readouterr().err


@pytest.fixture
def curve_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    keys = tmp_path / "keys"
    keygen(keys, "vggvoxd")
    keygen(keys / "admins", "alice")
    keygen(keys / "readers", "ruth")
    keygen(keys / "strangers", "mallory")
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({
        "security": {"server_key": str(keys / "vggvoxd.key_secret"),
                     "admins": str(keys / "admins"), "readers": str(keys / "readers")},
        "status": {"interval_s": 0.3}}))
    events, control = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    d = DaemonProcess(tmp_path, args=["--config", str(cfg), "--events", events,
                                      "--control", control])
    d.conn = Connection(control, events, 10, keys / "vggvoxd.key",
                        keys / "admins/alice.key_secret")
    d.start()
    yield d, keys
    d.stop()


def test_curve_keys_decide_who_gets_what(curve_daemon: tuple[DaemonProcess, Path]) -> None:
    d, keys = curve_daemon
    admin = d.conn

    def as_(key: Path | None, timeout: float = 10) -> Connection:
        server = keys / "vggvoxd.key" if key else None
        return Connection(admin.control, admin.events, timeout, server, key)

    reader = as_(keys / "readers/ruth.key_secret")
    mallory = as_(keys / "strangers/mallory.key_secret", timeout=1.5)
    nobody = as_(None, timeout=1.5)
    subs = {"reader": reader.subscribe(["status"]), "mallory": mallory.subscribe(["status"]),
            "nobody": nobody.subscribe(["status"])}
    try:
        # A reader may ask for status and the list, and hears the events...
        assert reader.request("status")["ok"] and reader.request("list")["speakers"] == []
        assert "stdin" in reader.request("calibration")["sources"]
        assert Connection.receive(subs["reader"], 10) is not None
        # ...but may change nothing.
        for op, fields in [("remove", {"name": "victim"}), ("reload", {}),
                           ("enroll", {"name": "mallory", "audio": [b"\0\0"]}),
                           ("calibration_reset", {})]:
            with pytest.raises(ClientError, match=f"'{op}' needs an admin key"):
                reader.request(op, **fields)
        # An admin may (the remove fails only because there is nobody to remove).
        assert admin.request("reload")["ok"]
        assert admin.request("calibration_reset")["reset"] == ["stdin"]
        with pytest.raises(ClientError, match="no speaker named 'victim'"):
            admin.request("remove", name="victim")
        # A key in neither folder, or no key, gets no reply and no event at all.
        for who, conn in (("mallory", mallory), ("nobody", nobody)):
            with pytest.raises(ClientError, match="no answer"):
                conn.request("status")
            assert Connection.receive(subs[who], 1.0) is None, who
        assert Connection.receive(subs["reader"], 5) is not None, "the reader still hears"
    finally:
        for s in subs.values():
            s.close()
    assert "refused a client with an unknown key" in d.output()
    assert d.stop()[0] == 0


def test_a_client_needs_both_keys(tmp_path: Path) -> None:
    keygen(tmp_path, "c")
    with pytest.raises(ClientError, match="both --server-key"):
        Connection("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", key=tmp_path / "c.key_secret")
    with pytest.raises(ClientError, match="no secret key"):
        Connection("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", server_key=tmp_path / "c.key",
                   key=tmp_path / "c.key")


def test_tcp_beyond_loopback_needs_keys(tmp_path: Path) -> None:
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "vggvoxd.main", "--events", f"tcp://0.0.0.0:{free_port()}",
         "--control", f"ipc://{tmp_path}/c.sock", "--source", "stdin"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "without authentication" in lines[0] and "keygen" in lines[0]
    assert time.monotonic() - t0 < 20, "refused before the model is loaded"


def test_loopback_tcp_without_keys_is_a_warning(caplog) -> None:
    settings = config.parse({"endpoints": {"control": "tcp://127.0.0.1:5561",
                                           "events": "tcp://[::1]:5560"}})
    with caplog.at_level("WARNING"):
        check_exposure(settings)
    assert caplog.text.count("every local user can connect") == 2
    for host in ("0.0.0.0", "*", "192.168.1.4", "[::]", "eth0"):
        with pytest.raises(config.ConfigError, match="without authentication"):
            check_exposure(config.parse({"endpoints": {"events": f"tcp://{host}:5560"}}))


def test_bad_key_settings_are_one_line_each(tmp_path: Path) -> None:
    from vggvoxd.curveauth import Curve

    keygen(tmp_path, "d")
    with pytest.raises(config.ConfigError, match="needs 'security.admins'"):
        config.parse({"security": {"server_key": str(tmp_path / "d.key_secret")}})
    (tmp_path / "d.key_secret").chmod(0o644)
    sec = config.parse({"security": {"server_key": str(tmp_path / "d.key_secret"),
                                     "readers": str(tmp_path)}}).security
    with pytest.raises(config.ConfigError, match="may be read by others.*chmod 600"):
        Curve(sec)
    (tmp_path / "d.key_secret").chmod(0o600)
    with pytest.raises(config.ConfigError, match="holds no secret key"):
        Curve(config.parse({"security": {"server_key": str(tmp_path / "d.key"),
                                         "readers": str(tmp_path)}}).security)
    with pytest.raises(config.ConfigError, match="not a folder"):
        Curve(config.parse({"security": {"server_key": str(tmp_path / "d.key_secret"),
                                         "admins": str(tmp_path / "nope")}}).security)


# ---------------------------------------------------------------- group-shared sockets


def as_user(user: str, control: str) -> dict[str, object]:
    """Ask for status as another user, in a forked child: (ok, error text)."""
    import pwd

    pw = pwd.getpwnam(user)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, then use the real client code
        try:
            os.close(read)
            os.initgroups(user, pw.pw_gid)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            try:
                reply = Connection(control, control, timeout=3).request("status")
                out = {"ok": True, "state": reply["state"]}
            except ClientError as e:
                out = {"ok": False, "error": str(e)}
            os.write(write, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        data = f.read()
    os.waitpid(pid, 0)
    return dict(json.loads(data))


@pytest.fixture
def users() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd: the test creates a group and two users")
    group, member, other = "vggvoxtg", "vggvoxtm", "vggvoxto"
    subprocess.run(["groupadd", "-f", group], check=True)
    for u, extra in ((member, ["-G", group]), (other, [])):
        subprocess.run(["userdel", u], capture_output=True)
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", *extra, u], check=True)
    yield group, member, other
    for u in (member, other):
        subprocess.run(["userdel", u], capture_output=True)
    subprocess.run(["groupdel", group], capture_output=True)


def test_group_members_may_use_the_sockets_and_others_are_told_why_not(
        users: tuple[str, str, str]) -> None:
    group, member, other = users
    top = Path(tempfile.mkdtemp(prefix="vggvox-access-", dir="/tmp"))
    try:
        top.chmod(0o711)  # others may pass through, as through /run
        runtime = top / "vggvox"
        d = DaemonProcess(top, env={"RUNTIME_DIRECTORY": str(runtime)},
                          args=["--socket-group", group])
        # The default endpoints, in the runtime folder, as under systemd.
        d.argv = [a for i, a in enumerate(d.argv)
                  if a not in ("--events", "--control") and d.argv[i - 1] not in
                  ("--events", "--control")]
        control = f"ipc://{runtime}/control.sock"
        d.conn = Connection(control, f"ipc://{runtime}/events.sock")
        old = os.umask(0o077)  # as under the unit's UMask=0077
        try:
            d.start()
        finally:
            os.umask(old)
        try:
            sock = runtime / "control.sock"
            assert stat.S_IMODE(sock.stat().st_mode) == 0o660
            assert stat.S_IMODE(runtime.stat().st_mode) == 0o750
            allowed = as_user(member, control)
            assert allowed["ok"], allowed
            denied = as_user(other, control)
            assert not denied["ok"] and "permission denied" in str(denied["error"])
            assert f"group '{group}'" in str(denied["error"])
        finally:
            assert d.stop()[0] == 0
        gone = as_user(member, control)
        assert not gone["ok"] and "not running" in str(gone["error"])
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_one_loopback_rule_for_every_listening_surface() -> None:
    from vggvox.loopback import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.5.5", "::1", "[::1]",
                                        "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "*", "::", "[::]", "10.0.0.1",
                                            "pi.lan", "eth0", ""))
