"""Which local user is on the other end of a connection to the web bridge, and whether
the daemon's control socket would let that user in.

The token alone cannot hold the local-user policy on one machine: a cookie is
sent to every port of its host (RFC 6265, section 8.5), so a local user who
runs a server on another loopback port and gets the page's user to open it
learns the token. So a connection from this machine is also checked by who
makes it: the kernel knows the owner's uid of each TCP socket (asked through
sock_diag netlink, one exact lookup, as ``ss`` does; else found in
``/proc/self/net/tcp``), and that uid must be one the control socket's
permissions admit (its owner, root, its group's members, or everyone if it is
open to all; every folder above it searchable too), as if that user ran
``vggvox-client``. A connection from another machine has no local owner; the
token guards it alone.

Only an ESTABLISHED socket's owner is taken. A client that sends its whole
request and closes at once leaves an orphaned socket (FIN_WAIT, then
TIME_WAIT) that the kernel reports as root's, and one that resets leaves none
at all, while the server can still read the request: so a connection from an
address of this machine whose owner cannot be established (closed, closing,
gone, or the tables unreadable: out of files) is refused, never taken for
root's or for another machine's. The check runs once the request's headers are
read, before its body: a socket's owner is fixed for its life, and what a close
changes (the uid reported) the state shows.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pwd
import socket
import stat
import struct
import sys
import threading
from pathlib import Path

TABLES = (Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6"))
_SOCK_DIAG, _BY_FAMILY, _NLM_F_REQUEST = 4, 20, 1
_TCP_ESTABLISHED, _TCP_LISTEN = 1, 10


def _hex(address: str, port: int) -> str:
    """An address and port as the kernel prints them in /proc/net/tcp*: each 32-bit
    word of the address in host byte order, in hex."""
    ip = ipaddress.ip_address(address.split("%")[0])
    raw = ip.packed
    words = [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, len(raw), 4)]
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


class _Kernel:
    """One sock_diag netlink socket, opened at start and kept: a lookup then needs no new
    file, so a bridge out of files (a flood) can still tell who connects, rather than
    refuse everyone local. Used by the handler threads one at a time (a lookup is one
    short exchange with the kernel)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def open(self) -> bool:
        with self._lock:
            try:
                self._socket()
                return True
            except OSError:
                return False

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _SOCK_DIAG)
            self._sock.settimeout(1.0)
        return self._sock

    def ask(self, kind: int, flags: int, req: bytes) -> bytes:
        """The kernel's answer to one request (matched by its sequence number, so that a
        late answer to an earlier request that timed out is never taken for this one)."""
        with self._lock:
            self._seq += 1
            try:
                nl = self._socket()
                nl.send(struct.pack("=IHHII", 16 + len(req), kind, flags, self._seq, 0) + req)
                for _ in range(8):
                    reply = nl.recv(4096)
                    if struct.unpack_from("=I", reply, 8)[0] == self._seq:
                        return reply
                raise OSError("no answer from sock_diag")
            except OSError:
                if self._sock is not None:  # start afresh at the next lookup
                    self._sock.close()
                    self._sock = None
                raise


_KERNEL = _Kernel()


def readable() -> bool:
    """Whether this process can find sockets' owners at all (and from now on without a
    new file for each lookup: the netlink socket stays open)."""
    if _KERNEL.open():
        return True
    return TABLES[0].exists() and os.access(TABLES[0], os.R_OK)


def refusal(control: Path, client: tuple[str, int], server: tuple[str, int]) -> str | None:
    """Why the connection ``client`` -> ``server`` may not use the page by the
    local-user policy; None when it may (from another machine: the token alone)."""
    if is_local(client[0]) is False:
        return None
    uid = owner(client, server)
    if uid is None:
        return ("this connection comes from this machine, and which local user made it "
                "cannot be established (it was closed or reset as it was read, or the "
                "kernel's socket tables cannot be read now): refused")
    if not admits(control, uid):
        return (f"this local user (uid {uid}) may not use vggvoxd's control socket "
                f"{control}, so not this page either")
    return None


def is_local(address: str) -> bool | None:
    """Whether ``address`` is one of this machine's (the kernel lets a socket bind to
    it); None when that cannot be told (no file left for the probe)."""
    host = _ipv4(address) or address
    if ipaddress.ip_address(host.split("%")[0]).is_loopback:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
        return True
    except OSError as e:  # EAFNOSUPPORT: no IPv6 here, so no such address of ours
        return False if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) else None


def owner(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid that owns the client's end of the connection ``client`` -> ``server``
    when that end is on this machine and ESTABLISHED; None when it is not (not here,
    closing or gone), or cannot be seen."""
    c, s = _ipv4(client[0]) or client[0], _ipv4(server[0]) or server[0]
    try:
        return _diag(c, client[1], s, server[1])
    except OSError:  # no netlink here (a sandbox): the slower tables
        return _table_owner(client, server)


def _diag(client: str, cport: int, server: str, sport: int) -> int | None:
    """One sock_diag lookup of the TCP socket whose local end is ``client``."""
    family = socket.AF_INET6 if ":" in client else socket.AF_INET
    size = 16 if family == socket.AF_INET6 else 4
    ends = [socket.inet_pton(family, a.split("%")[0]).ljust(16, b"\0") for a in (client, server)]
    no_cookie = struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)
    sockid = struct.pack(">HH", cport, sport) + ends[0] + ends[1] + struct.pack("=I", 0)
    req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid + no_cookie
    reply = _KERNEL.ask(_BY_FAMILY, _NLM_F_REQUEST, req)
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind != _BY_FAMILY:  # an error: no such socket here
        return None
    state = reply[17]
    found_port = struct.unpack_from(">H", reply, 20)[0]
    found_addr = reply[24:24 + size]
    # The kernel's lookup falls back to a listening socket: that is not the client's.
    if state == _TCP_LISTEN or found_port != cport or found_addr != ends[0][:size]:
        return None
    if state != _TCP_ESTABLISHED:  # closed by its owner: reported as root's (orphaned)
        return None
    return int(struct.unpack_from("=I", reply, 16 + 4 + 48 + 12)[0])


def _table_owner(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    (c, cport), (s, sport) = client[:2], server[:2]
    ends = {(_hex(c, cport), _hex(s, sport))}
    c4, s4 = _ipv4(c), _ipv4(s)
    if c4 is not None and s4 is not None:
        ends.add((_hex(c4, cport), _hex(s4, sport)))
    for table in TABLES:
        try:
            data = table.read_bytes()
        except OSError:
            continue
        for local, remote in ends:
            # Found with one search, not by splitting every line: the table holds every
            # socket of the machine, and a flood makes it long.
            at = data.find(f" {local} {remote} ".encode())
            if at >= 0:
                fields = data[at:data.find(b"\n", at)].split()
                # local rem st tx:rx tr:when retrnsmt uid; st 01 is ESTABLISHED
                return int(fields[6]) if int(fields[2], 16) == _TCP_ESTABLISHED else None
    return None


def _ipv4(address: str) -> str | None:
    """The IPv4 form of an IPv4-mapped IPv6 address (an IPv6 socket's view of an IPv4
    client), as the kernel may list it in /proc/net/tcp."""
    mapped = getattr(ipaddress.ip_address(address.split("%")[0]), "ipv4_mapped", None)
    return str(mapped) if mapped is not None else None


def admits(socket_path: Path, uid: int) -> bool:
    """Whether the permissions of ``socket_path`` (and of every folder above it) let
    ``uid`` connect: write on the socket, search on the folders. While there is no
    socket (no daemon), only this process's own user and root."""
    if uid == 0 or uid == os.getuid():
        return True
    try:
        if not stat.S_ISSOCK(socket_path.stat().st_mode):
            return False
    except OSError:
        return False
    try:
        user = pwd.getpwuid(uid)
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    except KeyError:  # no name (a transient systemd user): its own groups are unknown
        groups = set()
    needs = [(socket_path, 2)] + [(p, 1) for p in socket_path.parents]  # write; search
    for p, bit in needs:
        try:
            st = p.stat()
        except OSError:
            return False
        if uid == st.st_uid:
            allowed = st.st_mode & (bit << 6)
        elif st.st_gid in groups:
            allowed = st.st_mode & (bit << 3)
        else:
            allowed = st.st_mode & bit
        if not allowed:
            return False
    return True
