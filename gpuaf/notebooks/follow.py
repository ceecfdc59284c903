"""What became of a notebook job's items: the batch system's word and the item's own.

``gpuaf-run-notebook`` leaves ``item-<i>/status.json`` in the job's folder; once it says
``succeeded`` or ``failed`` that is the item's outcome. Until then the batch system says
whether the item waits, is held or runs; an item the batch system finished without a
final status.json failed before or while its notebook ran (killed, out of time, image
missing), and its reason says what the batch system said.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuaf.run_notebook import STATUS
from gpuaf.spawners.backends.base import JobState, JobStatus

FINAL_ITEM = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class ItemView:
    state: str  # queued | held | running | succeeded | failed | cancelled
    reason: str = ""
    host: str | None = None
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_ITEM


def read_status(job_dir: Path, index: int) -> dict[str, Any] | None:
    """The item's status.json, or None when there is none (yet) or it cannot be read."""
    try:
        data = json.loads((job_dir / f"item-{index}" / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _when(text: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def item_view(batch: JobStatus | None, status: dict[str, Any] | None, cancelled: bool) -> ItemView:
    """One item's state from the batch system's status and the item's status.json."""
    own = (status or {}).get("state")
    started = _when((status or {}).get("started"))
    host = (status or {}).get("host") or (batch.host if batch else None)
    if own in ("succeeded", "failed"):
        code = status.get("exit") if isinstance(status.get("exit"), int) else None
        reason = "" if own == "succeeded" else str(status.get("error") or "a cell failed")
        return ItemView(own, reason, host, code, started, _when(status.get("finished")))
    state = batch.state if batch else JobState.UNKNOWN
    if not state.final:
        if own == "running" or state == JobState.RUNNING:
            return ItemView("running", "", host, None, started)
        if state == JobState.HELD:
            return ItemView("held", batch.reason if batch else "", host)
        place = (
            f" (position {batch.queue_position} in the queue)"
            if batch and batch.queue_position
            else ""
        )
        return ItemView("queued", (batch.reason if batch else "") + place)
    now = dt.datetime.now(dt.UTC)
    if cancelled or state == JobState.CANCELLED:
        why = "Cancelled." if cancelled else (batch.reason if batch else "Cancelled.")
        return ItemView("cancelled", why, host, None, started, now)
    said = (batch.reason if batch and batch.reason else "").rstrip(".")
    if own == "running":
        why = "The item stopped while its notebook ran" + (f": {said}." if said else ".")
    else:
        why = "The batch job ended without running the notebook" + (
            f": {said}." if said else "; its log says why."
        )
    code = batch.exit_code if batch else None
    return ItemView("failed", why, host, code, started, now)


def job_view(items: list[ItemView], cancelled: bool) -> tuple[str, str]:
    """The job's state and reason from its items' states."""
    states = [i.state for i in items]
    n = len(states)
    if all(i.final for i in items):
        failed = states.count("failed")
        if failed:
            first = next(i.reason for i in items if i.state == "failed")
            return "failed", f"{failed} of {n} item(s) failed; the first: {first}"
        if "cancelled" in states:
            done = states.count("succeeded")
            return "cancelled", f"Cancelled; {done} of {n} item(s) had finished."
        return "succeeded", f"All {n} item(s) ran." if n > 1 else ""
    done = sum(1 for s in states if s in FINAL_ITEM)
    if "running" in states:
        return "running", f"{states.count('running')} running, {done} of {n} done"
    held = next((i.reason for i in items if i.state == "held"), None)
    if held:
        return "queued", f"held: {held}"
    if cancelled:
        return "queued", "cancelling"
    waiting = next((i.reason for i in items if i.state == "queued" and i.reason), "")
    return "queued", waiting or f"{n - done} item(s) waiting"
