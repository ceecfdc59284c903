"""A notebook job's fields as the JupyterLab dialog, the CLI and the portal API take them
(values as typed JSON text), checked with :mod:`gpuaf.notebooks`: in the session before
anything leaves it, and again by the portal before anything is written."""

from __future__ import annotations

import ast
import json
import math
import os
import uuid
from typing import Any

from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.parameters import (
    check_name,
    declared_parameters,
    parse_param,
    parse_sweep,
    sweep_items,
)

DEFAULT_MAX_ITEMS = 10000  # the portal checks its own, smaller limit
FIELDS = {"path", "slice", "parameters", "sweep", "target", "walltime", "name", "idempotency_key"}


def limit(name: str, default: int) -> int:
    """A limit from the session's environment, or ``default``."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def json_default(text: str) -> tuple[bool, Any]:
    """A parameter's default as a JSON value, when the notebook writes a plain literal."""
    try:
        value = ast.literal_eval(text)
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    return True, value


def _texts(body: dict, key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise NotebookError(f"{key} must be an object of name: JSON text.")
    for name, text in value.items():
        check_name(name)
        if not isinstance(text, str):
            raise NotebookError(f'The value of {name} must be given as JSON text, e.g. "0.1".')
    return value


def _optional_text(body: dict, key: str) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise NotebookError(f"{key} must be text.")
    return value.strip()


def check_submission(
    body: object, nb: Any, *, extra: frozenset[str] = frozenset(), max_items: int | None = None
) -> dict[str, Any]:
    """The fields of a job submission, checked; a NotebookError says what is wrong."""
    if not isinstance(body, dict):
        raise NotebookError("The request must be a JSON object.")
    unknown = sorted(set(body) - FIELDS - extra)
    if unknown:
        allowed = ", ".join(sorted(FIELDS | extra))
        raise NotebookError(f"Unknown fields: {', '.join(unknown)}. Fields: {allowed}.")
    slice_name = _optional_text(body, "slice")
    if not slice_name:
        raise NotebookError("Choose a slice to run the notebook on.")
    params = [parse_param(f"{n}={t}") for n, t in _texts(body, "parameters").items()]
    sweeps = [parse_sweep(f"{n}={t}") for n, t in _texts(body, "sweep").items()]
    max_items = max_items or limit("GPUAF_MAX_SWEEP_ITEMS", DEFAULT_MAX_ITEMS)
    sweep_items(params, sweeps, limit=max_items, declared=declared_parameters(nb) or {})
    target = _optional_text(body, "target") or "local"
    if target != "local" and not (target.startswith("grid:") and len(target) > 5):
        raise NotebookError(f"Target {target!r} is not local or grid:<site>.")
    key = _optional_text(body, "idempotency_key")
    try:
        key = str(uuid.UUID(key or ""))
    except ValueError as exc:
        raise NotebookError("idempotency_key must be a UUID.") from exc
    return {
        "slice": slice_name,
        "parameters": dict(params),
        "sweep": dict(sweeps),
        "target": target,
        "walltime": _optional_text(body, "walltime"),
        "name": _optional_text(body, "name"),
        "idempotency_key": key,
    }
