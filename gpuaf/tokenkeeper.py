"""Keep the session's IAM access token fresh in ``$BEARER_TOKEN_FILE``.

WLCG bearer-token discovery: tools inside the session (and jobs submitted from it) find
the token in the file named by ``BEARER_TOKEN_FILE``. The keeper asks the hub for a
fresh token with the session's own hub token (``GET /hub/api/gpuaf/token``), writes it
atomically with mode 0600, and does so again well before it expires. It ends with the
session: it is started in the session's process group and stops when its parent is gone.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

MIN_SLEEP_S, MAX_SLEEP_S, RETRY_S = 5.0, 3600.0, 30.0


def token_file(environ: dict[str, str]) -> Path:
    if environ.get("BEARER_TOKEN_FILE"):
        return Path(environ["BEARER_TOKEN_FILE"])
    base = environ.get("TMPDIR") or "/tmp"  # noqa: S108 - per-session name, mode 0600
    owner = environ.get("GPUAF_SESSION_ID") or environ.get("GPUAF_JOB_ID") or os.getpid()
    return Path(base) / f"gpuaf-bt-{owner}"


def fetch(environ: dict[str, str], timeout: float = 20) -> dict:
    """{"access_token": ..., "expires_at": epoch seconds} from the hub."""
    url = environ["JUPYTERHUB_API_URL"].rstrip("/") + "/gpuaf/token"
    request = urllib.request.Request(  # noqa: S310 - the hub's own http(s) URL
        url, headers={"Authorization": f"token {environ['JUPYTERHUB_API_TOKEN']}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
        data = json.loads(reply.read())
    if not isinstance(data.get("access_token"), str) or not data.get("expires_at"):
        raise ValueError("the hub answered without a token")
    return data


def write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)


def next_refresh(expires_at: float, now: float) -> float:
    """Seconds to sleep: refresh once two thirds of the remaining lifetime have passed."""
    return min(max((expires_at - now) * 2 / 3, MIN_SLEEP_S), MAX_SLEEP_S)


def refresh_once(environ: dict[str, str], path: Path) -> float:
    """Fetch and write; return how long to sleep before the next round."""
    try:
        data = fetch(environ)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"gpuaf token keeper: no fresh token yet ({exc})", file=sys.stderr)
        return RETRY_S
    write(path, data["access_token"])
    return next_refresh(float(data["expires_at"]), time.time())


def run(environ: dict[str, str], parent: int) -> int:
    path = token_file(environ)
    try:
        while os.getppid() == parent:
            deadline = time.monotonic() + refresh_once(environ, path)
            while time.monotonic() < deadline and os.getppid() == parent:
                time.sleep(1.0)
    finally:  # the session is over: its token goes with it
        path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(dict(os.environ), os.getppid()))
