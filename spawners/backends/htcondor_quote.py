"""Values for HTCondor submit descriptions: strict patterns and the "new" quoting syntax.

A submit description is line-based text, and ``htcondor2.Submit(dict)`` itself joins
``key = value`` lines before parsing them, so a value must never carry a line break (it
would start a new line, e.g. a ``queue`` statement). condor_submit also expands macro
references in values: ``$(X)``, ``$ENV(X)`` (from the hub's own environment!) and the
match-time ``$$(X)``. Both are refused. Double and single quotes inside arguments and
environment values are quoted as HTCondor's new syntax prescribes: every word in single
quotes with ``'`` doubled, the whole in double quotes with ``"`` doubled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gpuaf.errors import BackendError
from gpuaf.spawners.backends.checks import ENV_KEY

TAG = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MACRO = re.compile(r"\$[A-Za-z0-9_$]*\(")


def refuse(message: str) -> BackendError:
    return BackendError(message, status=400)


def tag_value(value: object, what: str) -> str:
    """A string fit for a job attribute: letters, digits and ``_ . @ + -`` only."""
    if not isinstance(value, str) or not TAG.match(value):
        raise refuse(f"{what} {value!r} may only hold letters, digits and _ . @ + -")
    return value


def classad_string(value: object, what: str) -> str:
    return f'"{tag_value(value, what)}"'


def count(value: object, what: str, low: int = 1, high: int = 10**9) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(f"{what} must be a whole number from {low} to {high} (got {value!r})")
    return value


def plain_text(value: object, what: str) -> str:
    """A value for the new quoted syntax: no control characters, no macro references."""
    if not isinstance(value, str):
        raise refuse(f"{what} must be text (got {type(value).__name__})")
    if CONTROL.search(value):
        raise refuse(f"{what} contains a line break or another control character")
    if MACRO.search(value):
        raise refuse(f"{what} contains a $(...)-style reference, which HTCondor would expand")
    return value


def _quote_words(words: Iterable[str]) -> str:
    """New syntax: each word in single quotes ('' for '), the whole in double quotes ("")."""
    raw = " ".join("'" + w.replace("'", "''") + "'" for w in words)
    return '"' + raw.replace('"', '""') + '"'


def quote_arguments(args: Iterable[object]) -> str:
    return _quote_words(plain_text(a, "A command argument") for a in args)


def quote_environment(env: Mapping[str, str], trusted: Mapping[str, str] | None = None) -> str:
    """``env`` is checked; ``trusted`` holds values this module wrote itself."""
    words = []
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY.match(key):
            raise refuse(f"Environment variable name {key!r} is not a valid name")
        words.append(f"{key}={plain_text(value, f'The value of {key}')}")
    words += [f"{k}={v}" for k, v in (trusted or {}).items()]
    return _quote_words(words)
