"""Notebook jobs: submit (idempotent), list, follow, cancel, read logs and results."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpuaf.api import jobs_follow, jobs_service
from gpuaf.api.deps import (
    CurrentUser,
    FacilityDep,
    check_same_origin,
    client_address,
    json_body,
)
from gpuaf.api.identity import PortalUser
from gpuaf.api.schemas import JobItemOut, JobOut, Problem, TargetOut
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.models import FINAL_JOB_STATES, NotebookJob
from gpuaf.run_notebook import EXECUTED, LOG

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")]
Item = Annotated[int, PathParam(ge=0, le=100_000)]
ERRORS = {400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}}
JOB_TOKEN = "x-gpuaf-job-token"  # noqa: S105 - a header name: the token a session gives its job
MAX_LOG = 2 * 1024 * 1024  # bytes of a log returned (its end)


def require_scope(user: PortalUser, scope: str) -> None:
    """An IAM token must carry the WLCG scope of the action (hub tokens act as the user)."""
    if user.auth == "iam" and scope not in (user.scopes or frozenset()):
        raise PublicError(
            f"This token lacks the scope {scope}; ask your IAM for a token with it.", status=403
        )


def job_out(job: NotebookJob, prefix: str) -> JobOut:
    base = f"{prefix}api/v1/jobs/{job.id}"
    folder = Path(job.output_dir)
    items = [
        JobItemOut(
            index=i.index, parameters=i.parameters, state=i.state, reason=i.reason, host=i.host,
            exit_code=i.exit_code, started_at=i.started_at, finished_at=i.finished_at,
            log_url=f"{base}/items/{i.index}/log",
            notebook_url=f"{base}/items/{i.index}/notebook"
            if (folder / f"item-{i.index}" / EXECUTED).is_file() else None,
        )
        for i in job.items
    ]  # fmt: skip
    return JobOut(
        id=job.id, kind=job.kind, workers=job.workers, name=job.name, source=job.source,
        profile=job.profile, target=job.target,
        backend=job.backend, batch_id=job.batch_id, state=job.state, reason=job.reason,
        output_dir=job.output_dir, walltime_s=job.walltime_s, created_at=job.created_at,
        updated_at=job.updated_at, finished_at=job.finished_at,
        counts=dict(Counter(i.state for i in job.items)), items=items,
        url=f"{prefix}jobs/{job.id}",
    )  # fmt: skip


def load_job(facility: Facility, user: PortalUser, job_id: str) -> NotebookJob:
    """The user's job (admins: anyone's); 404 when there is none the user may see."""
    with facility.ledger.session() as db:
        job = db.get(NotebookJob, job_id, options=[selectinload(NotebookJob.items)])
        if job is None or (job.user_name != user.name and not user.admin):
            raise PublicError(f"There is no job {job_id} of yours.", status=404)
        db.expunge_all()
        return job


def prefix_of(request: Request) -> str:
    return request.app.state.identity.prefix


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=201,
    responses={**ERRORS, 200: {"model": JobOut}, 409: {"model": Problem}, 413: {"model": Problem}},
    summary="Submit a notebook as a batch job (a retry with the same idempotency_key finds it)",
)
async def submit_job(request: Request, user: CurrentUser, facility: FacilityDep) -> JSONResponse:
    require_scope(user, "compute.create")
    check_same_origin(request, user)
    body = await json_body(request)
    secrets = {}
    if user.auth == "iam":  # the job may use the submitter's token ($BEARER_TOKEN_FILE)
        secrets["BEARER_TOKEN"] = request.headers["authorization"].partition(" ")[2].strip()
    elif request.headers.get(JOB_TOKEN):  # a session sends its own IAM token along
        identity = request.app.state.identity
        secrets["BEARER_TOKEN"] = await identity.job_token(request.headers[JOB_TOKEN], user)
    job_id, created = await jobs_service.submit(facility, user, body, secrets)
    job = await asyncio.to_thread(load_job, facility, user, job_id)
    if created:
        await asyncio.to_thread(
            facility.ledger.audit, user.name, "job.submit", job_id,
            client_addr=client_address(request), profile=job.profile, to=job.target,
            items=len(job.items), backend=job.backend, batch_id=job.batch_id,
        )  # fmt: skip
    out = job_out(job, prefix_of(request))
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)


@router.get(
    "/targets",
    response_model=list[TargetOut],
    responses=ERRORS,
    summary="Where notebook jobs may run: the local queue and the Grid sites (HTCondor only)",
)
def targets(user: CurrentUser, facility: FacilityDep) -> list[TargetOut]:
    out = [TargetOut(name="local", label=f"the local queue ({facility.backend.name})")]
    if facility.backend.name == "htcondor":
        for name, site in facility.settings.notebooks.grid_sites.items():
            kind = "ARC CE" if site.kind == "arc" else "HTCondor-CE"
            out.append(TargetOut(name=f"grid:{name}", label=f"{name} ({kind} {site.endpoint})"))
    return out


@router.get("/jobs", response_model=list[JobOut], responses=ERRORS, summary="My jobs, newest first")
async def my_jobs(
    request: Request,
    user: CurrentUser,
    facility: FacilityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobOut]:
    return await asyncio.to_thread(
        jobs_of_user, facility, user.name, limit, offset, prefix_of(request)
    )


def jobs_of_user(
    facility: Facility, user: str, limit: int, offset: int, prefix: str
) -> list[JobOut]:
    query = (
        select(NotebookJob)
        .where(NotebookJob.user_name == user, NotebookJob.state != "submitting")
        .options(selectinload(NotebookJob.items))
        .order_by(NotebookJob.created_at.desc(), NotebookJob.id.desc())
        .offset(offset)
        .limit(limit)
    )
    with facility.ledger.session() as db:
        return [job_out(j, prefix) for j in db.scalars(query)]


@router.get("/jobs/{job_id}", response_model=JobOut, responses={**ERRORS, 404: {"model": Problem}})
async def one_job(
    request: Request, job_id: JobId, user: CurrentUser, facility: FacilityDep
) -> JobOut:
    """One job with its items, brought up to date first."""
    job = await asyncio.to_thread(load_job, facility, user, job_id)
    if job.state not in FINAL_JOB_STATES:
        await jobs_follow.refresh(facility, [job_id])
        job = await asyncio.to_thread(load_job, facility, user, job_id)
    return job_out(job, prefix_of(request))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={**ERRORS, 404: {"model": Problem}},
    summary="Cancel a job: its items that have not ended are removed from the batch system",
)
async def cancel_job(
    request: Request, job_id: JobId, user: CurrentUser, facility: FacilityDep
) -> JobOut:
    return await cancel_for(request, job_id, user, facility)


async def cancel_for(request: Request, job_id: str, user: PortalUser, facility: Facility) -> JobOut:
    require_scope(user, "compute.cancel")
    check_same_origin(request, user)
    job = await asyncio.to_thread(load_job, facility, user, job_id)
    if job.state not in FINAL_JOB_STATES:
        await jobs_follow.refresh(facility, [job_id])  # items that just ended keep their outcome
        await jobs_follow.cancel(facility, job_id, user.name)
        await asyncio.to_thread(
            facility.ledger.audit, user.name, "job.cancel", job_id,
            client_addr=client_address(request), owner=job.user_name,
        )  # fmt: skip
    return job_out(await asyncio.to_thread(load_job, facility, user, job_id), prefix_of(request))


def _item_folder(job: NotebookJob, item: int) -> Path:
    if item >= len(job.items):
        raise PublicError(
            f"Job {job.id} has items 0 to {len(job.items) - 1}; there is no item {item}.",
            status=404,
        )
    return Path(job.output_dir) / f"item-{item}"


@router.get(
    "/jobs/{job_id}/items/{item}/log",
    response_class=PlainTextResponse,
    responses={**ERRORS, 404: {"model": Problem}},
    summary="The item's log: the notebook run's log and the cells' output (its last 2 MiB)",
)
async def item_log(
    job_id: JobId, item: Item, user: CurrentUser, facility: FacilityDep
) -> PlainTextResponse:
    job = await asyncio.to_thread(load_job, facility, user, job_id)
    path = _item_folder(job, item) / LOG
    if job.kind == "dask":  # a worker's own output, where its batch job writes it
        path = Path(job.output_dir) / worker_log_name(job.backend, job.items[item].batch_id)
    text = await asyncio.to_thread(_tail, path)
    if text is None:
        text = f"(item {item} has no log yet: it is {job.items[item].state})\n"
    return PlainTextResponse(text)


def worker_log_name(backend: str, batch_id: str | None) -> str:
    # Slurm: the portal's --output=<dir>/%j.out; HTCondor: dask-jobqueue's Output
    return f"worker-{batch_id}.out" if backend == "htcondor" else f"{batch_id}.out"


def _tail(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(size - MAX_LOG, 0))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return None


@router.get(
    "/jobs/{job_id}/items/{item}/notebook",
    responses={**ERRORS, 404: {"model": Problem}},
    summary="The executed notebook of an item: HTML (default) or ?format=ipynb",
)
async def item_notebook(
    job_id: JobId,
    item: Item,
    user: CurrentUser,
    facility: FacilityDep,
    format: Annotated[str, Query(pattern=r"^(html|ipynb)$")] = "html",
):
    from gpuaf.api.rendering import executed_notebook

    job = await asyncio.to_thread(load_job, facility, user, job_id)
    path = _item_folder(job, item) / EXECUTED
    if not path.is_file():
        raise PublicError(
            f"Item {item} of job {job_id} has no executed notebook yet (it is "
            f"{job.items[item].state}).",
            status=404,
        )
    return await asyncio.to_thread(executed_notebook, path, format, f"{job.id}-item-{item}")
