"""``gpuaf-job``: the first command of every batch job the portal submits.

It loads the job's secrets (e.g. the session's hub token) from the file named by
``GPUAF_SECRETS_FILE`` into the environment, deletes that file, and replaces itself
with the rest of its command line. Secrets thus never travel in a job ad, a submit
description or a command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

SECRETS_ENV = "GPUAF_SECRETS_FILE"
SHARED_ENV = "GPUAF_SECRETS_SHARED"  # several items of one notebook job read one file
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_secrets(environ: dict[str, str]) -> dict[str, str]:
    """The secrets named in ``environ``; the file is removed once read, unless the job's
    items share it (``GPUAF_SECRETS_SHARED=1``: the portal removes it when the job ends)."""
    path = environ.pop(SECRETS_ENV, None)
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if environ.get(SHARED_ENV) != "1":
        os.unlink(path)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and _NAME.match(k) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"{path}: expected a JSON object of NAME: string")
    return data


def start_token_keeper(environ: dict[str, str]) -> None:
    """Write the first token now, keep it fresh in the background (see gpuaf.tokenkeeper)."""
    from gpuaf import tokenkeeper

    path = tokenkeeper.token_file(environ)
    environ["BEARER_TOKEN_FILE"] = str(path)
    tokenkeeper.refresh_once(environ, path)
    # the keeper's parent is this process, which becomes the session's server by exec
    subprocess.Popen(
        [sys.executable, "-m", "gpuaf.tokenkeeper"], env=environ, stdin=subprocess.DEVNULL
    )


def write_token_file(environ: dict[str, str]) -> None:
    """The job's bearer token in a 0600 file named by ``$BEARER_TOKEN_FILE`` (not renewed:
    it is valid until the token's own expiry)."""
    from gpuaf import tokenkeeper

    path = tokenkeeper.token_file(environ)
    tokenkeeper.write(path, environ["BEARER_TOKEN"])
    environ["BEARER_TOKEN_FILE"] = str(path)


def start_session_agent(environ: dict[str, str]) -> None:
    """Sample the session's GPUs in the background and report them (see gpuaf.agent)."""
    # like the keeper, its parent is this process, which becomes the session's server by exec
    subprocess.Popen([sys.executable, "-m", "gpuaf.agent"], env=environ, stdin=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: gpuaf-job COMMAND [ARG ...]", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    try:
        environ.update(load_secrets(environ))
    except (OSError, ValueError) as exc:
        print(f"gpuaf-job: cannot load the job's secrets: {exc}", file=sys.stderr)
        return 1
    if environ.get("JUPYTERHUB_API_URL") and environ.get("JUPYTERHUB_API_TOKEN"):
        start_token_keeper(environ)
    elif environ.get("BEARER_TOKEN"):  # a batch job: the submitter's token, as a file too
        write_token_file(environ)
    if all(
        environ.get(k) for k in ("GPUAF_PORTAL_URL", "GPUAF_SESSION_ID", "JUPYTERHUB_API_TOKEN")
    ):
        start_session_agent(environ)
    program = shutil.which(args[0], path=environ.get("PATH")) or args[0]
    os.execve(program, args, environ)  # noqa: S606 - argument list, no shell


if __name__ == "__main__":
    raise SystemExit(main())
