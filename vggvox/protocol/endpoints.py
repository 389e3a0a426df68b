"""Where a daemon listens, as both ends work it out.

The daemon binds ``endpoints.control`` and ``endpoints.events`` of its config, else
``ipc://<runtime folder>/control.sock`` and ``events.sock``: systemd's
``RUNTIME_DIRECTORY`` (``/run/vggvox``), else the user's runtime folder. A client on
the same machine reads the same config file (the user's, then the machine's) for
those two keys, then looks for the system daemon's sockets, then the user's own.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir, user_runtime_dir

from vggvox import settingsfile
from vggvox.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/vggvox/vggvoxd.yaml")
SYSTEM_RUNTIME = Path("/run/vggvox")
"""The systemd unit's ``RuntimeDirectory=``: where the system daemon's sockets are."""
NAMES = ("control", "events")
"""The two sockets: control (ROUTER: requests and replies) and events (PUB)."""


def user_config_file() -> Path | None:
    """``~/.config/vggvox/vggvoxd.yaml``, or None for a user with no home to look in:
    systemd gives a DynamicUser service no HOME, and its user has no passwd entry."""
    try:
        return Path(user_config_dir("vggvox")) / "vggvoxd.yaml"
    except RuntimeError:
        return None


def find_config(explicit: str | Path | None) -> Path | None:
    if explicit:
        return Path(explicit)
    # The user's own file first: a user's settings override the machine's, as with
    # most tools (the system service runs as a user without one).
    for candidate in (user_config_file(), SYSTEM_CONFIG):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def user_runtime_base() -> Path:
    """The user's runtime folder for vggvox. Without XDG_RUNTIME_DIR (root shells, sudo,
    cron, containers) platformdirs falls back to /tmp/runtime-UID and warns, with a line
    of its source code, at every command: the fallback is expected here, and
    ``private_dir`` checks that folder's owner and mode, so the warning is left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(user_runtime_dir("vggvox"))


def private_dir(path: Path) -> Path:
    """``path`` (created 0700 if missing) when it is this user's own and its parent
    this user's or root's, neither writable by others.

    The sockets live there: a folder another user owns or may write to (a
    ``/tmp/runtime-UID`` fallback someone else created first) could let them
    swap the sockets, so it is refused with a message naming it.
    """
    for d in (path.parent, path):
        if not d.exists():
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for d, owners in ((path.parent, {os.getuid(), 0}), (path, {os.getuid()})):
        st = d.stat()
        if st.st_uid not in owners:
            raise ConfigError(f"{d}: belongs to uid {st.st_uid}, not to this user "
                              f"({os.getuid()}): refusing to put the daemon's sockets there")
        if st.st_mode & 0o022 and not st.st_mode & 0o1000:
            raise ConfigError(f"{d}: others may write to it (mode {st.st_mode & 0o777:o}): "
                              "refusing to put the daemon's sockets there")
    return path


def runtime_folder() -> Path:
    """The service's ``RuntimeDirectory`` (systemd's, its first folder), else the user's
    runtime folder: where the sockets (and the web bridge's token) live. Not yet
    checked: ``private_dir`` does that."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    return Path(runtime.split(":")[0]) if runtime else user_runtime_base()


def runtime_endpoint(which: str) -> str:
    """``ipc://`` in the runtime folder (checked private)."""
    return f"ipc://{private_dir(runtime_folder())}/{which}.sock"


def configured(which: str, path: Path | None = None) -> str | None:
    """``endpoints.<which>`` of the config file that the daemon would read (or ``path``),
    or None when it sets none. Only that key is read: the daemon validates the rest."""
    found = path or find_config(None)
    if found is None:
        return None
    data: Any = settingsfile.read(found)  # as strictly as the daemon reads it
    section = data.get("endpoints") if isinstance(data, dict) else None
    value = section.get(which) if isinstance(section, dict) else None
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{found}: 'endpoints.{which}' must be a string, "
                          f"got {type(value).__name__}")
    return value or None


def discover(which: str) -> str:
    """Where a daemon on this machine listens: its config, the systemd runtime folder,
    or this user's."""
    if which not in NAMES:
        raise ValueError(f"no endpoint {which!r} (known: {', '.join(NAMES)})")
    value = configured(which)
    if value:
        return value
    system = SYSTEM_RUNTIME / f"{which}.sock"
    try:
        present = system.exists()
    except PermissionError:  # the system daemon's, not open to us: a probe will say so
        present = True
    return f"ipc://{system}" if present else runtime_endpoint(which)
