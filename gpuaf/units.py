"""Parsing of the human units used in settings: memory sizes and durations."""

from __future__ import annotations

import re

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_MEM_FACTOR_MIB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024, "B": 1 / 2**20}
_DUR = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.IGNORECASE)
_HMS = re.compile(r"^\s*(\d+):([0-5]\d):([0-5]\d)\s*$")
_DUR_FACTOR = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def memory_mib(value: str | int) -> int:
    """``"4G"``/``"4GB"``/``"4GiB"`` → 4096; a bare number is MiB. Binary units throughout."""
    if isinstance(value, bool):
        raise ValueError("a memory size is a number with a unit, e.g. 4G or 512M")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a memory size must be positive")
        return value
    m = _MEM.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a memory size; write e.g. 512M, 4G or 1.5T")
    unit = (m[2] or "M")[0].upper()
    mib = float(m[1]) * _MEM_FACTOR_MIB[unit]
    if mib < 1:
        raise ValueError(f"{value!r} is smaller than 1 MiB")
    return int(mib)


def duration_s(value: str | int) -> int:
    """``"8h"`` → 28800, ``"30m"``, ``"1d"``, ``"02:00:00"``; a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is e.g. 30m, 8h, 2d or 02:00:00")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return value
    if m := _DUR.match(str(value)):
        seconds = int(m[1]) * _DUR_FACTOR[m[2].lower()]
    elif m := _HMS.match(str(value)):
        seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    else:
        raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 8h, 2d or 02:00:00")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_mib(mib: int) -> str:
    if mib < 1024:
        return f"{mib} MiB"
    return f"{mib / 1024:.1f}".removesuffix(".0") + " GiB"


def format_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def approx_duration(seconds: float) -> str:
    """A rough duration for estimates: "about 40 s", "about 6 min", "about 3 h"."""
    if seconds < 90:
        return f"about {max(round(seconds / 10) * 10, 10)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {round(seconds / 3600)} h"
