"""Who can reach the daemon's sockets: ipc file permissions and TCP exposure.

ipc sockets are files: connecting needs write permission on the socket and
search permission on its folder. Under the shipped unit (``UMask=0077``) both
are the daemon's alone. With ``security.group`` set, the sockets become
0660 and the runtime folder 0750, both owned by that group, so that its
members can use the client. Only the runtime folder is changed (the home of
the default endpoints, which the daemon owns): a folder named in an explicit
endpoint is left as its owner set it.

TCP has no file permissions. Beyond loopback anyone on the network could
connect, so that needs CURVE (``curveauth.py``); on loopback every local user
can, which is worth a warning.
"""

from __future__ import annotations

import grp
import logging
import os
import re
from pathlib import Path

from vggvox.errors import ConfigError
from vggvox.loopback import is_loopback
from vggvoxd.config import Settings
from vggvoxd.lock import ipc_path

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
FOLDER_MODE = 0o750


def tcp_host(endpoint: str) -> str | None:
    """The host of a ``tcp://HOST:PORT`` endpoint (brackets stripped), else None."""
    m = re.fullmatch(r"tcp://(?:([^;]*);)?\[?([^\]]*)\]?:(\d+|\*)", endpoint)
    return m.group(2) if m and endpoint.startswith("tcp://") else None


def check_exposure(settings: Settings) -> None:
    """Refuse TCP beyond loopback without CURVE; warn about loopback TCP without it."""
    if settings.security.server_key:
        return
    for which in ("events", "control"):
        endpoint = settings.endpoint(which)
        host = tcp_host(endpoint)
        if host is None:
            continue
        if not is_loopback(host):
            raise ConfigError(
                f"refusing to serve {which} on {endpoint} without authentication: anyone who "
                "can reach it could read every event or change the voiceprints. Set up CURVE "
                "keys (vggvox-client keygen; security.server_key, security.admins, "
                "security.readers; see README, 'Access control') or bind 127.0.0.1")
        log.warning("%s on %s: every local user can connect (no CURVE keys); use ipc:// "
                    "or set security.server_key", which, endpoint)


def group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"'security.group': no group {name!r} on this machine "
                          f"(create it: groupadd {name})") from None


def share(path: Path, gid: int, mode: int, group: str) -> None:
    try:
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    except OSError as e:
        raise ConfigError(f"'security.group': cannot give {path} to group {group!r}: "
                          f"{e.strerror} (vggvoxd must be a member: SupplementaryGroups= in "
                          "its unit)") from None


def share_sockets(settings: Settings) -> None:
    """After binding: give the ipc sockets (and the runtime folder) to the group."""
    group = settings.security.group
    if not group:
        return
    gid = group_id(group)
    for which in ("events", "control"):
        path = ipc_path(settings.endpoint(which))
        if path is None:
            continue
        if not getattr(settings.endpoints, which):  # a default endpoint: our runtime folder
            share(path.parent, gid, FOLDER_MODE, group)
        share(path, gid, SOCKET_MODE, group)
        log.info("%s socket %s: usable by group %s", which, path, group)
