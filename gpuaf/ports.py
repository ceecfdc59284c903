"""Checking ports before a server binds them, so a busy port is a sentence, not a traceback."""

from __future__ import annotations

import errno
import socket
import time

from gpuaf.errors import PublicError


class PortBusy(PublicError):
    status = 409


def ensure_free(host: str, port: int, key: str, what: str, wait: float = 0) -> None:
    """Raise PortBusy naming the settings key if ``host:port`` cannot be bound.

    ``wait``: seconds to keep trying first, for a port a stopping process still holds.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return _try_bind(host, port, key, what)
        except PortBusy:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)


def _try_bind(host: str, port: int, key: str, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(
                    f"Port {port} on {host} ({what}) is already in use by another program. "
                    f"Stop that program, or choose another port with `{key}` in the settings"
                    + (" or --port" if key == "portal.port" else "")
                    + "."
                ) from exc
            raise PortBusy(f"Cannot listen on {host}:{port} ({what}): {exc.strerror}.") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
