"""The job manifest: what ``gpuaf-run-notebook`` runs, one JSON file in the job's folder.

A job folder (``~/<notebooks.output_dir>/<job id>/``) holds ``manifest.json``, the frozen
``notebook.ipynb`` and, once items ran, one ``item-<i>/`` folder per sweep item with
``executed.ipynb``, ``log.txt`` and ``status.json``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuaf.notebooks.errors import NotebookError

VERSION = 1
MANIFEST = "manifest.json"
NOTEBOOK = "notebook.ipynb"
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
KERNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_job_name(name: str) -> str:
    if not JOB_NAME.match(name):
        raise NotebookError(
            f"Job name {name!r} is not allowed: use 1 to 40 letters, digits and _ . - "
            "(starting with a letter or digit)."
        )
    return name


def name_from(stem: str) -> str:
    """A job name made from a notebook's file name: unusual characters become -."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-._")[:40].strip("-._")
    return cleaned or "notebook"


def new_job_id(name: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{check_job_name(name)}-{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class Manifest:
    job_id: str
    name: str
    user: str
    items: tuple[dict[str, Any], ...]
    output_dir: str  # the job's folder where its home is visible; "." in a sandbox
    kernel: str = "python3"
    notebook: str = NOTEBOOK
    source: str = ""  # the notebook the user submitted, for people
    profile: str = ""
    target: str = "local"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "job_id": self.job_id,
            "name": self.name,
            "user": self.user,
            "profile": self.profile,
            "target": self.target,
            "source": self.source,
            "notebook": self.notebook,
            "kernel": self.kernel,
            "output_dir": self.output_dir,
            "items": [dict(i) for i in self.items],
        }

    def text(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"


def parse_manifest(data: Any) -> Manifest:
    """A manifest read back and checked; ValueError says what is wrong."""
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} notebook job manifest")
    for key, pattern in (("job_id", JOB_ID), ("kernel", KERNEL), ("notebook", FILE_NAME)):
        if not isinstance(data.get(key), str) or not pattern.match(data[key]):
            raise ValueError(f"{key} is missing or not allowed: {data.get(key)!r}")
    items = data.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ValueError("items must be a non-empty list of parameter objects")
    for item in items:
        for name in item:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"parameter name {name!r} is not an identifier")
    output_dir = data.get("output_dir")
    if not isinstance(output_dir, str) or not output_dir or "\x00" in output_dir:
        raise ValueError("output_dir is missing")
    return Manifest(
        job_id=data["job_id"],
        name=str(data.get("name", "")),
        user=str(data.get("user", "")),
        items=tuple(items),
        output_dir=output_dir,
        kernel=data["kernel"],
        notebook=data["notebook"],
        source=str(data.get("source", "")),
        profile=str(data.get("profile", "")),
        target=str(data.get("target", "local")),
    )


def read_manifest(path: Path) -> Manifest:
    with open(path, encoding="utf-8") as fh:
        return parse_manifest(json.load(fh))
