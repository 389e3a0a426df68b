"""CURVE key files: ``NAME.key`` (public) and ``NAME.key_secret``, as ZeroMQ writes them.

The daemon's public key goes to its clients; each client's public key goes in the
daemon's ``security.admins`` or ``security.readers`` folder (``requests.role_of``
says which ops a reader may send)."""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth

from vggvox.errors import ConfigError


def keygen(folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``folder/name.key`` (public, 0644) and ``folder/name.key_secret`` (0600)."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"key name {name!r}: give a plain file name, e.g. alice or vggvoxd")
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise ConfigError(f"{p} exists: refusing to overwrite a key")
    folder.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret key is never readable by others, not even briefly
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    public.chmod(0o644)
    return public, secret
