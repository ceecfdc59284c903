"""Following Dask clusters: their worker jobs in the batch system become the cluster's items.

Each round asks the batch system once per open cluster for its worker jobs
(:func:`gpuaf.dask_workers.find_workers`); a worker seen for the first time becomes a new
item, and every item keeps its state, host and start and end times, so worker GPU time
counts against the quota and in the usage report like a notebook job's items. More
workers at once than the cluster booked are removed again, the newest first.

A cluster ends when the notebook closes it (``POST /jobs/<id>/cancel``: its workers are
removed) or, left behind by a kernel that died, when its walltime is over and no worker
is left (workers end themselves ``dask.death_timeout`` after losing their scheduler).
"""

from __future__ import annotations

import datetime as dt
import logging

from gpuaf.dask_workers import find_workers
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.models import FINAL_JOB_STATES, NotebookJob, NotebookJobItem, utcnow
from gpuaf.notebooks.follow import FINAL_ITEM, ItemView
from gpuaf.spawners.backends.base import JobState, JobStatus

log = logging.getLogger("gpuaf.api.dask")
OPEN = ("queued", "held", "running")


def worker_view(status: JobStatus, started: bool) -> ItemView:
    """A worker job's state as an item's: removal by its cluster is how workers end."""
    state = status.state
    if state == JobState.RUNNING:
        return ItemView("running", "", status.host)
    if state == JobState.HELD:
        return ItemView("held", status.reason, status.host)
    if state == JobState.PENDING:
        return ItemView("queued", status.reason)
    if state == JobState.FAILED:
        return ItemView("failed", status.reason or "The worker's job failed.", status.host)
    if state == JobState.UNKNOWN and not started:
        return ItemView("cancelled", "Left the queue without running.", status.host)
    why = "Removed by its cluster." if state == JobState.CANCELLED else "Ended."
    return ItemView("succeeded", why, status.host, status.exit_code)


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _apply(job: NotebookJob, found: dict[str, JobStatus], now: dt.datetime) -> list[str]:
    """Bring the items up to date; the batch ids of workers over the cluster's limit."""
    items = {i.batch_id: i for i in job.items}
    for batch_id in sorted(found, key=_order):
        item = items.get(batch_id)
        if item is None:
            item = NotebookJobItem(index=len(job.items), batch_id=batch_id, state="queued")
            item.parameters = {"worker": batch_id}
            job.items.append(item)
            items[batch_id] = item
        if item.state in FINAL_ITEM:
            continue
        view = worker_view(found[batch_id], item.started_at is not None)
        item.state, item.reason, item.host = view.state, view.reason, view.host or item.host
        item.exit_code = view.exit_code
        if view.state == "running" and item.started_at is None:
            item.started_at = now
        if view.final:
            item.finished_at = now
    open_items = [i for i in job.items if i.state in OPEN]
    return [i.batch_id for i in open_items[job.workers or len(open_items) :]]


def _order(batch_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in batch_id.replace("_", ".").split(".") if p.isdigit())


def _settle(job: NotebookJob, now: dt.datetime) -> None:
    running = sum(i.state == "running" for i in job.items)
    waiting = sum(i.state in ("queued", "held") for i in job.items)
    if running or waiting:
        state = "running" if running else "queued"
        reason = f"{running} worker(s) running, {waiting} waiting"
    elif now > _aware(job.created_at) + dt.timedelta(seconds=job.walltime_s):
        state, reason = "succeeded", f"Ended: its walltime is over. {_summary(job)}"
    else:
        state, reason = job.state, job.reason
    if (state, reason) != (job.state, job.reason):
        job.state, job.reason, job.updated_at = state, reason, now
        if state in FINAL_JOB_STATES:
            job.finished_at = now


def _summary(job: NotebookJob) -> str:
    ran = sum(i.started_at is not None for i in job.items)
    failed = sum(i.state == "failed" for i in job.items)
    text = f"{ran} worker(s) ran"
    return text + (f", {failed} failed." if failed else ".")


async def refresh_one(facility: Facility, job: NotebookJob) -> bool:
    """One round for an open cluster (a detached row with its items); whether it changed."""
    if job.backend == "local":
        return False  # its workers are processes of the session
    known = [i.batch_id for i in job.items if i.state not in FINAL_ITEM and i.batch_id]
    try:
        found = await find_workers(facility.backend, job.id, known)
    except PublicError as exc:
        log.warning("dask cluster %s: no status: %s", job.id, exc.log_message)
        return False
    now = utcnow()
    with facility.ledger.session() as db:
        row = db.get(NotebookJob, job.id)
        if row is None or row.state in FINAL_JOB_STATES:
            return False
        before = [(i.state, i.reason, i.host) for i in row.items] + [(row.state, row.reason)]
        extra = _apply(row, found, now)
        _settle(row, now)
        db.commit()
        changed = before != [(i.state, i.reason, i.host) for i in row.items] + [
            (row.state, row.reason)
        ]
    for batch_id in extra:  # booked N at once: the newest beyond N go
        log.info("dask cluster %s: removing worker %s over its limit", job.id, batch_id)
        await facility.backend.cancel(batch_id)
    return changed


async def close(facility: Facility, job: NotebookJob, who: str) -> None:
    """Remove the cluster's workers that have not ended; the cluster ends."""
    await refresh_one(facility, job)
    with facility.ledger.session() as db:
        row = db.get(NotebookJob, job.id)
        open_ids = [i.batch_id for i in row.items if i.state in OPEN and i.batch_id]
    for batch_id in open_ids:
        await facility.backend.cancel(batch_id)
    now = utcnow()
    with facility.ledger.session() as db:
        row = db.get(NotebookJob, job.id)
        for item in row.items:
            if item.state in OPEN:
                ran = item.started_at is not None
                item.state = "succeeded" if ran else "cancelled"
                item.reason = "Removed when the cluster closed."
                item.finished_at = now
        by_owner = who == row.user_name
        row.state = "succeeded" if by_owner else "cancelled"
        what = "Its workers ran inside the session." if row.backend == "local" else _summary(row)
        row.reason = f"{'Closed' if by_owner else 'Stopped'} by {who}. {what}"
        row.updated_at = row.finished_at = now
        db.commit()
