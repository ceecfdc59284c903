"""Errors of notebook jobs: each says what is wrong and what is allowed."""

from __future__ import annotations

from gpuaf.errors import PublicError


class NotebookError(PublicError):
    """A notebook, a parameter or a sweep that cannot be submitted (HTTP 400)."""

    status = 400


class NotebookTooLarge(NotebookError):
    """A notebook over ``notebooks.max_notebook_size`` (HTTP 413)."""

    status = 413


class SweepTooLarge(NotebookError):
    """A sweep with more items than ``notebooks.max_sweep_items`` (HTTP 413)."""

    status = 413


class PathNotAllowed(NotebookError):
    """A path outside the user's home directory (HTTP 403)."""

    status = 403


def size_text(n: int) -> str:
    """Bytes for people: 512 bytes, 3.4 KiB, 12.0 MiB."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
