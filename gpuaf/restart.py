"""What a hub stopped without cleanup (``kill -9``, a crash, a node reboot) leaves behind.

A new hub started on the same data directory takes over: the proxy of the old hub is
replaced by JupyterHub itself (it reads the proxy's pid file and stops that process), the
portal API of the old hub ends with it (``die_with_parent``), and sessions keep running —
their jobs belong to the batch system, and the hub's database says where they listen.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import psutil

log = logging.getLogger("gpuaf.restart")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PROXY_NAME = "configurable-http-proxy"


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies.

    Linux only; returns False (and does nothing) elsewhere. If the parent is already gone
    when this is called, the signal is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
    return True


def leftover_proxy(pid_file: Path) -> psutil.Process | None:
    """The proxy an earlier hub of this data directory left running, if any."""
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    return proc if PROXY_NAME in cmdline else None


def main(argv: list[str]) -> None:
    """``python -m gpuaf.restart MODULE ARGS…``: run a hub service that ends with its hub."""
    if not argv:
        raise SystemExit("usage: python -m gpuaf.restart MODULE [ARGS…]")
    die_with_parent()  # kept across exec: the service is still the hub's child
    os.execv(sys.executable, [sys.executable, "-m", *argv])  # noqa: S606 - argument list


if __name__ == "__main__":
    main(sys.argv[1:])
