"""Papermill parameters: what a notebook declares, ``k=v`` values, sweeps and their grid.

Syntax (the same on the command line and in the API):

* ``--param k=v``: ``k`` a Python identifier (not a keyword), ``v`` JSON: ``lr=0.1``,
  ``epochs=10``, ``tags=["a","b"]``, ``name="abc"`` (quoted in the shell:
  ``name='"abc"'``). A bare word such as ``name=abc`` is refused: strings are JSON strings.
* ``--sweep k=v1,v2,...``: comma-separated JSON values, split only at top-level commas
  (a comma inside a string, list or object stays in its value): ``lr=0.1,0.01``,
  ``opt="adam","sgd"``, ``shape=[1,2],[3,4]`` (two items, each a list).
* ``--sweep k=[v1,v2,...]``: a single JSON list is the list of values itself; to sweep
  over one list value write ``k=[[1,2]]``.
* Several sweeps form a grid (every combination); the number of items is limited by
  ``notebooks.max_sweep_items``.
"""

from __future__ import annotations

import ast
import itertools
import json
import keyword
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nbformat

from gpuaf.notebooks.errors import NotebookError, SweepTooLarge

MAX_NAME = 64
MAX_VALUE_TEXT = 64 * 1024
QUOTE_HINT = (
    "values are JSON: numbers as is (lr=0.1), strings in double quotes "
    "(name='\"abc\"' in a shell), lists in brackets (sizes=[1,2])"
)


@dataclass(frozen=True)
class Parameter:
    name: str
    default_text: str  # as written in the notebook's parameters cell
    type_name: str = ""
    help: str = ""


def declared_parameters(nb: nbformat.NotebookNode) -> dict[str, Parameter] | None:
    """Names and defaults of the cell tagged ``parameters``; None without such a cell."""
    cell = next(
        (c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if cell is None:
        return None
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get(
        "language_info", {}
    ).get("name", "python")
    try:
        from papermill.translators import papermill_translators

        translator = papermill_translators.find_translator(kernel, language)
        found = translator.inspect(cell)
    except Exception:  # noqa: BLE001 - an unknown kernel or language: read assignments
        found = None
    if found is not None:
        return {
            p.name: Parameter(p.name, p.default, p.inferred_type_name or "", p.help or "")
            for p in found
        }
    return _assignments(cell.source)


def _assignments(source: str) -> dict[str, Parameter]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name):
                text = ast.get_source_segment(source, node.value) or ""
                out[target.id] = Parameter(target.id, text)
    return out


def check_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or len(name) > MAX_NAME:
        raise NotebookError(
            f"Parameter name {name!r} is not allowed: names are Python identifiers (letters, "
            f"digits and _, not starting with a digit, at most {MAX_NAME}) and not keywords."
        )
    return name


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _split(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep:
        raise NotebookError(f"{what} {text!r} is not of the form name=value; {QUOTE_HINT}.")
    check_name(name)
    if len(value) > MAX_VALUE_TEXT:
        raise NotebookError(f"The value of {name} is longer than {MAX_VALUE_TEXT} characters.")
    return name, value


def _json_values(name: str, text: str) -> list[Any]:
    """Top-level comma-separated JSON values of ``text``."""
    decoder = json.JSONDecoder(parse_constant=_no_constants)
    values, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, ValueError) as exc:
            bad = text[pos:].split(",", 1)[0].strip() or "(nothing)"
            raise NotebookError(
                f"The value of {name} is not JSON: {bad[:80]}; {QUOTE_HINT}."
            ) from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise NotebookError(f"The value of {name} is not a finite number.")
        values.append(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return values
        if text[pos] != ",":
            raise NotebookError(
                f"The value of {name} is not JSON: unexpected {text[pos:][:40]!r}; {QUOTE_HINT}."
            )
        pos += 1


def parse_param(text: str) -> tuple[str, Any]:
    """``name=JSON`` → (name, value)."""
    name, raw = _split(text, "Parameter")
    values = _json_values(name, raw)
    if len(values) != 1:
        raise NotebookError(
            f"--param {name} has {len(values)} values; give one (a list is written [1,2]), "
            "or use --sweep to run one item per value."
        )
    return name, values[0]


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``name=v1,v2`` or ``name=[v1,v2]`` → (name, values)."""
    name, raw = _split(text, "Sweep")
    values = _json_values(name, raw)
    if len(values) == 1 and isinstance(values[0], list):
        values = values[0]
    if not values:
        raise NotebookError(f"The sweep over {name} has no values; give at least one.")
    return name, values


def sweep_items(
    params: Iterable[tuple[str, Any]],
    sweeps: Iterable[tuple[str, list[Any]]],
    *,
    limit: int,
    declared: dict[str, Parameter] | None = None,
) -> list[dict[str, Any]]:
    """Every combination of the sweeps, each with the fixed parameters: one dict per item."""
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    for name, value in params:
        if name in fixed:
            raise NotebookError(f"Parameter {name} is given twice; give it once.")
        fixed[name] = value
    for name, values in sweeps:
        if name in fixed or name in grid:
            raise NotebookError(
                f"Parameter {name} is given more than once (as --param or --sweep); "
                "give each parameter once."
            )
        grid[name] = list(values)
    if declared is not None:
        unknown = [n for n in [*fixed, *grid] if n not in declared]
        if unknown:
            known = ", ".join(declared) or "none"
            raise NotebookError(
                f"The notebook's parameters cell does not set {', '.join(unknown)}; "
                f"its parameters: {known}."
            )
    total = math.prod(len(v) for v in grid.values())
    if total > limit:
        sizes = " x ".join(f"{len(v)} ({k})" for k, v in grid.items())
        raise SweepTooLarge(
            f"The sweep has {total} items ({sizes}); at most {limit} items may be "
            "submitted at once (notebooks.max_sweep_items)."
        )
    names = list(grid)
    return [
        {**fixed, **dict(zip(names, combo, strict=True))}
        for combo in itertools.product(*grid.values())
    ]
