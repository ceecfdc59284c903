"""Notebooks and paths a job may be made of: size, JSON, nbformat v4, inside the home.

Nothing here writes: a notebook is read from bytes (or from a file whose size is checked
before it is read) and refused with a :class:`~gpuaf.notebooks.errors.NotebookError`
that says what is wrong and what is allowed.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import nbformat
from nbformat.v4.rwbase import rejoin_lines
from nbformat.validator import get_validator, normalize

from gpuaf.notebooks.errors import NotebookError, NotebookTooLarge, PathNotAllowed, size_text

MAX_DETAIL = 200  # characters of nbformat's own message kept in ours


def _where(path: object) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return "".join(parts).lstrip(".") or "the top level"


def _short(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _schema_problem(exc: Exception) -> str:
    """The most specific of jsonschema's complaints, with where it is."""
    best = exc
    context = getattr(exc, "context", None)
    if context:
        from jsonschema.exceptions import best_match

        best = best_match(context) or exc
    path = list(getattr(best, "absolute_path", None) or getattr(exc, "absolute_path", []))
    return f"at {_where(path)}: {_short(getattr(best, 'message', str(best)))}"


def _schema_check(content: dict, name: str) -> None:
    minor = content.get("nbformat_minor")
    if not isinstance(minor, int) or isinstance(minor, bool) or minor < 0:
        raise NotebookError(
            f"{name} is not a valid nbformat 4 notebook: nbformat_minor is missing or not a number."
        )
    validator = get_validator(version=4, version_minor=minor, name="jsonschema")
    if validator is None:  # a minor version newer than this nbformat knows: nbformat decides
        return
    first = next(iter(validator.iter_errors(content)), None)
    if first is not None:
        raise NotebookError(f"{name} is not a valid nbformat 4 notebook, {_schema_problem(first)}.")


def load_notebook(
    data: bytes, *, max_size: int, name: str = "The notebook"
) -> nbformat.NotebookNode:
    """A valid nbformat-4 notebook from ``data``, or a NotebookError saying why not."""
    if len(data) > max_size:
        raise NotebookTooLarge(
            f"{name} is {size_text(len(data))}; notebooks of at most {size_text(max_size)} "
            "may be submitted (clear large outputs before submitting)."
        )
    try:
        text = data.decode("utf-8")
        content = json.loads(text)
    except UnicodeDecodeError as exc:
        raise NotebookError(
            f"{name} is not UTF-8 text (byte {exc.start}); a notebook is a JSON file (.ipynb)."
        ) from exc
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{name} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "a notebook is a JSON file (.ipynb)."
        ) from exc
    if not isinstance(content, dict):
        raise NotebookError(f"{name} is JSON but not a notebook: a notebook is a JSON object.")
    version = content.get("nbformat")
    if version != 4 or isinstance(version, bool):
        raise NotebookError(
            f"{name} has nbformat {version!r}; only nbformat 4 notebooks (Jupyter 4 and "
            "later) can be submitted: open and save it in JupyterLab to convert it."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _schema_check(content, name)  # the schema's own complaint, before any repair
            _changes, content = normalize(content, strip_invalid_metadata=False)
            nb = nbformat.from_dict(content)
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(
            f"{name} is not a valid nbformat 4 notebook, {_schema_problem(exc)}."
        ) from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise NotebookError(f"{name} is not a valid nbformat 4 notebook ({exc}).") from exc
    return rejoin_lines(nb)  # sources and outputs as one string each


def inside_home(path: str | os.PathLike[str], home: str | os.PathLike[str]) -> Path:
    """``path`` (relative: to ``home``) resolved, symlinks followed; it must stay in ``home``."""
    base = Path(home).resolve(strict=True)
    raw = Path(os.path.expanduser(os.fspath(path))) if str(path).startswith("~") else Path(path)
    if "\x00" in str(raw):
        raise PathNotAllowed("The path contains a NUL character.")
    full = (raw if raw.is_absolute() else base / raw).resolve(strict=False)
    if full != base and not full.is_relative_to(base):
        raise PathNotAllowed(
            f"{path} is outside your home directory ({base}); only files under your home "
            "may be submitted (links that point outside it do not count)."
        )
    return full


def read_notebook_file(
    path: str | os.PathLike[str], home: str | os.PathLike[str], *, max_size: int
) -> tuple[Path, nbformat.NotebookNode]:
    """The resolved path and the notebook at ``path``, which must be a file inside ``home``."""
    full = inside_home(path, home)
    try:
        info = full.stat()
    except OSError as exc:
        raise NotebookError(f"Cannot read the notebook {path}: {exc.strerror}.") from exc
    if not stat.S_ISREG(info.st_mode):
        raise NotebookError(f"{path} is not a file; give the path of a notebook (.ipynb).")
    if info.st_size > max_size:  # refused before a byte of it is read
        raise NotebookTooLarge(
            f"{path} is {size_text(info.st_size)}; notebooks of at most "
            f"{size_text(max_size)} may be submitted (clear large outputs before submitting)."
        )
    with open(full, "rb") as fh:
        data = fh.read(max_size + 1)
    return full, load_notebook(data, max_size=max_size, name=f"The notebook {path}")
