"""The software environment of a session, frozen for a batch job that reruns a notebook.

Every command runs as an argument list (no shell), with a timeout; a tool that is missing
or fails gives ``None`` (conda, spack) or its error text (pip), never an exception.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

TIMEOUT_S = 120
MAX_TEXT = 2 * 1024 * 1024  # characters kept of one tool's output


async def _run(argv: list[str], timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``argv``; -1 when it cannot run or time runs out."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return -1, "", str(exc)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1, "", f"{argv[0]} did not finish within {timeout:.0f} s"
    text = lambda b: b.decode("utf-8", "replace")[:MAX_TEXT]  # noqa: E731
    return proc.returncode or 0, text(out), text(err)


async def pip_freeze(python: str | None = None) -> str:
    """``pip freeze`` of the session's Python: the image's packages and the user's own
    (``pip install --user`` ones are on the same path, so they are included)."""
    code, out, err = await _run([python or sys.executable, "-m", "pip", "freeze", "--all"])
    if code != 0:
        return f"# pip freeze failed: {err.strip()[:500]}\n"
    return out


async def conda_export(environ: dict[str, str]) -> str | None:
    """``conda env export`` of ``$CONDA_PREFIX`` when it is set and conda is installed."""
    prefix = environ.get("CONDA_PREFIX")
    conda = environ.get("CONDA_EXE") or shutil.which("conda", path=environ.get("PATH"))
    if not prefix or not conda or not os.path.exists(conda):
        return None
    code, out, _err = await _run([conda, "env", "export", "--prefix", prefix])
    return out if code == 0 and out.strip() else None


async def spack_lock(environ: dict[str, str]) -> str | None:
    """The active Spack environment (``$SPACK_ENV``): its ``spack.lock``, else ``spack find``."""
    env_dir = environ.get("SPACK_ENV")
    if not env_dir:
        return None
    lock = Path(env_dir) / "spack.lock"
    try:
        if lock.is_file():
            return lock.read_text(encoding="utf-8", errors="replace")[:MAX_TEXT]
    except OSError:
        pass
    spack = shutil.which("spack", path=environ.get("PATH"))
    if not spack:
        return None
    code, out, _err = await _run([spack, "-e", env_dir, "find", "--long", "--variants"])
    return out if code == 0 and out.strip() else None


async def freeze_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``environment`` of a job submission (see the portal's POST /api/v1/jobs)."""
    environ = dict(os.environ if environ is None else environ)
    pip, conda, spack = await asyncio.gather(
        pip_freeze(), conda_export(environ), spack_lock(environ)
    )
    return {
        "image": environ.get("GPUAF_IMAGE") or None,
        "image_digest": environ.get("GPUAF_IMAGE_DIGEST") or None,
        "pip_freeze": pip,
        "conda": conda,
        "spack": spack,
    }
