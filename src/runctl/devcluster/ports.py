"""Loopback ports for the local control plane's listeners.

Chosen below the ephemeral range: a port the kernel hands out (bind to 0) can be taken, before the
component that is to listen on it starts, as the local port of a connection the already running
API server or etcd opens.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes the local ports of outgoing connections from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, below the ephemeral range."""
    low = max(_ephemeral_ports()[0], 10001)
    for port in random.sample(range(10000, low), k=min(200, low - 10000)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between 10000 and {low}")
