"""Following notebook jobs: their items' states from the batch system and their folders.

``refresh`` brings jobs that have not ended up to date (one status query per job, the
items' ``status.json``); the portal runs it every ``sessions.poll_interval`` and for a
job someone looks at. An item's final state is never changed afterwards. When a job has
ended, its secrets file (the submitter's token) is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpuaf.api import dask_follow
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.models import FINAL_JOB_STATES, NotebookJob, utcnow
from gpuaf.notebooks.batch import item_jobs
from gpuaf.notebooks.follow import FINAL_ITEM, ItemView, item_view, job_view, read_status

log = logging.getLogger("gpuaf.api.jobs")


def _open_jobs(facility: Facility, ids: list[str] | None) -> list[NotebookJob]:
    query = (
        select(NotebookJob)
        .where(NotebookJob.state.not_in(FINAL_JOB_STATES), NotebookJob.state != "submitting")
        .options(selectinload(NotebookJob.items))
    )
    if ids is not None:
        query = query.where(NotebookJob.id.in_(ids))
    with facility.ledger.session() as db:
        jobs = list(db.scalars(query))
        db.expunge_all()
    return jobs


async def refresh(facility: Facility, ids: list[str] | None = None) -> int:
    """Bring the open jobs (or those of ``ids``) up to date; the number that changed."""
    jobs = await asyncio.to_thread(_open_jobs, facility, ids)
    runner = item_jobs(facility.backend, facility.settings)
    changed = 0
    for job in jobs:
        if job.kind == "dask":
            changed += await dask_follow.refresh_one(facility, job)
            continue
        open_items = [i for i in job.items if i.state not in FINAL_ITEM and i.batch_id]
        try:
            batch = await runner.status(job.batch_id or "", [i.batch_id for i in open_items])
        except PublicError as exc:
            log.warning("notebook job %s: no status: %s", job.id, exc.log_message)
            continue
        folder = Path(job.output_dir)
        views = {
            i.index: item_view(batch.get(i.batch_id), read_status(folder, i.index), False)
            for i in open_items
        }
        if await asyncio.to_thread(_store, facility, job.id, views):
            changed += 1
    return changed


def _store(facility: Facility, job_id: str, views: dict[int, ItemView]) -> bool:
    with facility.ledger.session() as db:
        job = db.get(NotebookJob, job_id)
        if job is None or job.state in FINAL_JOB_STATES:
            return False
        changed = False
        for item in job.items:
            view = views.get(item.index)
            if view is None or item.state in FINAL_ITEM:
                continue
            new = (view.state, view.reason, view.host, view.exit_code)
            if new != (item.state, item.reason, item.host, item.exit_code):
                item.state, item.reason, item.host, item.exit_code = new
                changed = True
            if view.started_at and not item.started_at:
                item.started_at, changed = view.started_at, True
            if view.state == "running" and not item.started_at:
                item.started_at, changed = utcnow(), True
            if view.final and not item.finished_at:
                item.finished_at, changed = view.finished_at or utcnow(), True
        changed |= _settle(job)
        db.commit()
        return changed


def _settle(job: NotebookJob) -> bool:
    """The job's state from its items'; once final, its secrets file goes."""
    views = [ItemView(i.state, i.reason) for i in job.items]
    state, reason = job_view(views, False)
    if (state, reason) == (job.state, job.reason):
        return False
    job.state, job.reason, job.updated_at = state, reason, utcnow()
    if state in FINAL_JOB_STATES:
        job.finished_at = utcnow()
        if job.secrets_file:
            Path(job.secrets_file).unlink(missing_ok=True)
            job.secrets_file = None
    return True


async def cancel(facility: Facility, job_id: str, who: str) -> None:
    """Remove the job's items from the batch system; those not ended become cancelled."""
    jobs = await asyncio.to_thread(_open_jobs, facility, [job_id])
    if not jobs:
        return
    job = jobs[0]
    if job.kind == "dask":
        await dask_follow.close(facility, job, who)
        facility.forget_availability()
        return
    ids = [i.batch_id for i in job.items if i.state not in FINAL_ITEM and i.batch_id]
    await item_jobs(facility.backend, facility.settings).cancel(job.batch_id or "", ids)
    await asyncio.to_thread(_cancelled, facility, job_id, who)
    facility.forget_availability()


def _cancelled(facility: Facility, job_id: str, who: str) -> None:
    with facility.ledger.session() as db:
        job = db.get(NotebookJob, job_id)
        for item in job.items:
            if item.state not in FINAL_ITEM:
                item.state, item.reason, item.finished_at = (
                    "cancelled",
                    f"Cancelled by {who}.",
                    utcnow(),
                )
        _settle(job)
        db.commit()


async def run_forever(facility: Facility) -> None:
    """Follow open jobs every ``sessions.poll_interval``."""
    while True:
        await asyncio.sleep(facility.settings.sessions.poll_interval)
        try:
            await refresh(facility)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following notebook jobs failed; trying again next round")
