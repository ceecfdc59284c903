"""``gpuaf-run-notebook``: run one item of a notebook job with papermill, inside the job.

It runs after ``gpuaf-job`` (which loaded the job's secrets and keeps the token file in
``$BEARER_TOKEN_FILE`` fresh), in the same image and packages as the user's sessions::

    gpuaf-run-notebook MANIFEST [--item I] [--output-dir DIR]

Item ``I`` is ``--item`` (HTCondor passes ``$(ProcId)``), else ``$GPUAF_ITEM``, else
``$SLURM_ARRAY_TASK_ID`` (a Slurm job array), else 0. The notebook named in the manifest
(beside it) runs with the item's parameters on kernel ``python3``, with ``DIR/item-I/``
(DIR: ``--output-dir``, else the manifest's ``output_dir``) as its working directory;
there it leaves ``executed.ipynb``, ``log.txt`` (papermill's log and the cells' output)
and ``status.json`` (state, started, finished, exit, error). The exit code is 0 when
every cell ran, 1 when a cell failed, 2 when the job itself is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from gpuaf.notebooks.manifest import Manifest, read_manifest

EXECUTED = "executed.ipynb"
LOG = "log.txt"
STATUS = "status.json"
# a busy node may take more than papermill's 60 s to start a kernel; the walltime still bounds it
KERNEL_START_TIMEOUT = 300


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_status(folder: Path, status: dict[str, Any]) -> None:
    """status.json, replaced in one step: a reader never sees half of it."""
    tmp = folder / f".{STATUS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATUS)


def item_index(given: int | None, environ: dict[str, str]) -> int:
    if given is not None:
        return given
    for var in ("GPUAF_ITEM", "SLURM_ARRAY_TASK_ID"):
        if environ.get(var, "").strip():
            return int(environ[var])
    return 0


def _error_text(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename:  # papermill's PapermillExecutionError: the failing cell's exception
        cell = getattr(exc, "exec_count", None)
        where = f"cell [{cell}]: " if cell is not None else ""
        return f"{where}{ename}: {evalue}"
    return f"{type(exc).__name__}: {exc}"


def run_item(manifest: Manifest, base: Path, item: int, output_root: Path) -> int:
    """Execute item ``item`` into ``output_root/item-<item>/``; the process's exit code."""
    if not 0 <= item < len(manifest.items):
        print(
            f"gpuaf-run-notebook: item {item} does not exist; the job has items "
            f"0 to {len(manifest.items) - 1}",
            file=sys.stderr,
        )
        return 2
    folder = output_root / f"item-{item}"
    folder.mkdir(parents=True, exist_ok=True)
    parameters = dict(manifest.items[item])
    status: dict[str, Any] = {
        "job": manifest.job_id,
        "item": item,
        "parameters": parameters,
        "state": "running",
        "host": socket.gethostname(),
        "started": _now(),
        "finished": None,
        "exit": None,
        "error": None,
    }
    write_status(folder, status)
    handler = logging.FileHandler(folder / LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    code = 0
    try:
        import papermill

        papermill.execute_notebook(
            str(base / manifest.notebook),
            str(folder / EXECUTED),
            parameters=parameters,
            kernel_name=manifest.kernel,
            log_output=True,
            progress_bar=False,
            cwd=str(folder),
            start_timeout=KERNEL_START_TIMEOUT,
        )
    except Exception as exc:  # noqa: BLE001 - any failure is the item's, and is reported
        code = 1
        status["error"] = _error_text(exc)
        logger.error("the notebook failed: %s", status["error"])
    finally:
        logger.removeHandler(handler)
        handler.close()
    status.update(state="failed" if code else "succeeded", finished=_now(), exit=code)
    write_status(folder, status)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpuaf-run-notebook", description=__doc__.split("\n")[0])
    p.add_argument("manifest", type=Path, help="the job's manifest.json")
    p.add_argument("--item", type=int, help="sweep item (default: $GPUAF_ITEM, Slurm array)")
    p.add_argument("--output-dir", type=Path, help="folder of item-<i>/ (default: manifest)")
    args = p.parse_args(argv)
    try:
        manifest = read_manifest(args.manifest)
        item = item_index(args.item, dict(os.environ))
    except (OSError, ValueError) as exc:
        print(f"gpuaf-run-notebook: cannot run the job: {exc}", file=sys.stderr)
        return 2
    root = args.output_dir or Path(manifest.output_dir)
    with contextlib.suppress(OSError):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    return run_item(manifest, args.manifest.resolve().parent, item, root)


if __name__ == "__main__":
    raise SystemExit(main())
