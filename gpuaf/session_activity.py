"""What a session is doing, read from its own Jupyter server (for idle culling).

The session agent runs beside the server in the same job; the server is its parent
process, found by the port it listens on. Kernels (a busy one is active now) and
terminals carry their last activity. Reads pass ``no_track_activity`` so they are not
activity themselves; an open browser tab's polling is not counted either.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import urllib.request
from typing import Any

import psutil


def server_port(pid: int) -> int | None:
    """The lowest TCP port the process ``pid`` (the session's server) listens on."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return None
    ports = sorted({c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN})
    return ports[0] if ports else None


def _get_json(url: str, token: str, timeout: float = 10) -> Any:
    request = urllib.request.Request(  # noqa: S310 - our own loopback http URL
        url, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 - loopback http
        return json.loads(reply.read())


def _when(value: object) -> dt.datetime | None:
    try:
        at = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def server_activity(environ: dict[str, str], port: int | None) -> dict[str, Any] | None:
    """Kernels and terminals of the session's server, or None if it cannot be read."""
    if port is None:
        return None
    prefix = environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    base = f"http://127.0.0.1:{port}{prefix}api"
    token = environ.get("JUPYTERHUB_API_TOKEN", "")
    try:
        kernels = _get_json(f"{base}/kernels?no_track_activity=1", token)
        terminals = _get_json(f"{base}/terminals?no_track_activity=1", token)
    except (OSError, ValueError) as exc:
        print(f"gpuaf session agent: server not read ({exc})", file=sys.stderr)
        return None
    busy = sum(1 for k in kernels if k.get("execution_state") == "busy")
    times = [_when(item.get("last_activity")) for item in [*kernels, *terminals]]
    last = max((t for t in times if t), default=None)
    if busy:
        last = dt.datetime.now(dt.UTC)
    return {
        "kernels": len(kernels),
        "busy_kernels": busy,
        "terminals": len(terminals),
        "last_activity": last.isoformat() if last else None,
    }
