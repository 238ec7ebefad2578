"""Whether a server answers at all, asked before a client that would wait minutes on a dead one."""

from __future__ import annotations

import socket


def answers(host: str, port: int, timeout: float = 5.0) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``timeout`` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True
