"""Whether a listen address stays on this machine: the one check behind every
surface that refuses to listen beyond loopback without authentication (the
daemon's TCP sockets, its metrics endpoint, the web page)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``host`` (an IP address, ``[v6]`` in brackets too, or ``localhost``) is loopback;
    anything else (``*``, ``0.0.0.0``, an interface or host name) is taken as reachable
    from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
