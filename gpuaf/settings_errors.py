"""Turn a pydantic ValidationError into lines a site admin can act on."""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel, ValidationError


def format_validation_error(exc: ValidationError, source: str) -> str:
    from gpuaf.settings import Settings

    lines = [f"{source}: invalid settings"]
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        key = _key(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(Settings, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif not loc:
            lines.append(f"  {msg}")
        elif err["type"].startswith("value_error") or "input" not in err:
            lines.append(f"  {key}: {msg}")
        else:
            lines.append(f"  {key}: {msg} (got {err['input']!r})")
    return "\n".join(lines)


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(model: type, loc: tuple[int | str, ...]) -> list[str]:
    """Walk the model's annotations along loc and list the fields of the model found there."""
    current: object = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: object) -> object:
    """Strip Annotated and Optional around a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
