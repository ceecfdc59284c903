"""Notebook jobs in the portal: check, store once, write the job folder, submit, follow.

A submission is checked completely before anything is written (the notebook, fields,
slice, target, walltime, quota). Then one ledger row is inserted under the user's
idempotency key (a retried click finds it and makes nothing new), the job folder is
written next to its final place and renamed into it, and the items go to the backend.
If the backend refuses, the folder and the row are removed again and the user reads
why: nothing half-written is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gpuaf.api.identity import PortalUser
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.homes import home_of
from gpuaf.ledger.models import NotebookJob, NotebookJobItem, utcnow
from gpuaf.notebooks.batch import Submitted, item_jobs
from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.manifest import MANIFEST, NOTEBOOK
from gpuaf.notebooks.plan import JobPlan, parse_target, plan_notebook, profile_for
from gpuaf.notebooks.request import check_submission
from gpuaf.notebooks.validation import inside_home, load_notebook
from gpuaf.policy import check_job

log = logging.getLogger("gpuaf.api.jobs")
MIB = 1024 * 1024
ENVIRONMENT = "environment.json"
EXTRA = frozenset({"notebook", "environment"})
MAX_ENVIRONMENT = 1024 * 1024  # the frozen environment's JSON, in bytes


class KeyReused(PublicError):
    status = 409


def _notebook_bytes(value: object, max_size: int) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    raise NotebookError(
        "notebook must be the notebook's JSON (an object, or its text); "
        f"notebooks of at most {max_size // MIB} MiB may be submitted."
    )


def _environment(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(json.dumps(value)) > MAX_ENVIRONMENT:
        raise NotebookError("environment must be an object (the frozen environment) under 1 MiB.")
    return value


def digest(nb: Any, fields: dict[str, Any], environment: dict[str, Any]) -> str:
    what = {k: v for k, v in fields.items() if k != "idempotency_key"}
    text = json.dumps([nb, what, environment], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def plan_request(
    facility: Facility, user: PortalUser, body: object
) -> tuple[JobPlan, dict[str, Any], Any, dict[str, Any]]:
    """Everything checked, nothing written: the plan, the fields, the notebook, the env."""
    settings = facility.settings
    if not isinstance(body, dict):
        raise NotebookError("The request must be a JSON object.")
    max_size = settings.notebooks.max_notebook_size * MIB
    data = _notebook_bytes(body.get("notebook"), max_size)
    nb = load_notebook(data, max_size=max_size)
    fields = check_submission(body, nb, extra=EXTRA, max_items=settings.notebooks.max_sweep_items)
    environment = _environment(body.get("environment"))
    profile_for(settings, list(user.groups), fields["slice"])
    site, _ = parse_target(fields["target"], settings)
    if site is not None and facility.backend.name != "htcondor":
        raise NotebookError(
            f"Grid sites are reached through HTCondor's grid universe and this portal runs "
            f"its jobs with {facility.backend.name}: use target local."
        )
    home = home_of(settings, user.name)
    path = body.get("path") or f"{fields['name'] or 'notebook'}.ipynb"
    if not isinstance(path, str):
        raise NotebookError("path must be the notebook's path in your home, as text.")
    source = inside_home(path, home)  # a path outside the home is refused (403)
    plan = plan_notebook(
        settings, nb=nb, source=source, home=home, user=user.name, groups=list(user.groups),
        slice_name=fields["slice"],
        params=[f"{k}={json.dumps(v)}" for k, v in fields["parameters"].items()],
        sweeps=[f"{k}={json.dumps(v)}" for k, v in fields["sweep"].items()],
        target=fields["target"], walltime=fields["walltime"], name=fields["name"],
    )  # fmt: skip
    return plan, fields, nb, environment


def write_folder(plan: JobPlan, nb: Any, environment: dict[str, Any]) -> None:
    """The job folder, complete or not at all: written aside, then renamed into place."""
    final = plan.job_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        (tmp / MANIFEST).write_text(plan.manifest.text(), encoding="utf-8")
        (tmp / NOTEBOOK).write_text(nbformat.writes(nb), encoding="utf-8")
        (tmp / ENVIRONMENT).write_text(json.dumps(environment, indent=2) + "\n", "utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _existing(facility: Facility, user: str, key: str) -> NotebookJob | None:
    with facility.ledger.session() as db:
        query = select(NotebookJob).where(
            NotebookJob.user_name == user, NotebookJob.idempotency_key == key
        )
        return db.scalar(query)


def _same_request(job: NotebookJob, request_digest: str) -> NotebookJob:
    if job.request_digest != request_digest:
        raise KeyReused(
            f"This idempotency_key was already used for another submission (job {job.id}); "
            "send a new key for a new job."
        )
    return job


async def submit(
    facility: Facility, user: PortalUser, body: object, secrets: dict[str, str]
) -> tuple[str, bool]:
    """The job id, and whether this call made the job (False: a retry found it)."""
    plan, fields, nb, environment = await asyncio.to_thread(plan_request, facility, user, body)
    request_digest = digest(nb, fields, environment)
    key = fields["idempotency_key"]
    found = await asyncio.to_thread(_existing, facility, user.name, key)
    if found is not None:
        return _same_request(found, request_digest).id, False
    await asyncio.to_thread(check_job, facility.settings, facility.ledger, user, plan.profile)
    job = NotebookJob(
        id=plan.manifest.job_id, user_name=user.name, idempotency_key=key,
        request_digest=request_digest, name=plan.manifest.name,
        source=str(plan.notebook_path.relative_to(plan.home)), profile=plan.profile.name,
        target=fields["target"], backend=facility.backend.name,
        walltime_s=plan.profile.walltime, gpu_share=plan.profile.gpu_share,
        group_name=plan.accounting_group,
        output_dir=str(plan.job_dir), environment=environment, state="submitting",
        items=[NotebookJobItem(index=i, parameters=dict(p))
               for i, p in enumerate(plan.manifest.items)],
    )  # fmt: skip
    try:
        await asyncio.to_thread(_insert, facility, job)
    except IntegrityError:  # the same click, twice at once: the other one makes the job
        found = await asyncio.to_thread(_existing, facility, user.name, key)
        if found is None:
            raise
        return _same_request(found, request_digest).id, False
    try:
        await asyncio.to_thread(write_folder, plan, nb, environment)
        submitted = await item_jobs(facility.backend, facility.settings).submit(plan, secrets)
    except BaseException as exc:
        await asyncio.to_thread(_undo, facility, plan, job.id)
        if isinstance(exc, PublicError | asyncio.CancelledError):
            raise
        log.exception("notebook job %s could not be submitted", job.id)
        raise PublicError(
            "The job could not be submitted; nothing was left behind. Try again in a minute.",
            status=503,
        ) from exc
    await asyncio.to_thread(_submitted, facility, job.id, submitted)
    facility.forget_availability()
    return job.id, True


def _insert(facility: Facility, job: NotebookJob) -> None:
    with facility.ledger.session() as db:
        db.add(job)
        db.commit()


def _undo(facility: Facility, plan: JobPlan, job_id: str) -> None:
    shutil.rmtree(plan.job_dir, ignore_errors=True)
    with facility.ledger.session() as db:
        job = db.get(NotebookJob, job_id)
        if job is not None:
            db.delete(job)
            db.commit()


def _submitted(facility: Facility, job_id: str, submitted: Submitted) -> None:
    with facility.ledger.session() as db:
        job = db.get(NotebookJob, job_id)
        job.batch_id = submitted.batch_id
        job.secrets_file = submitted.secrets_file
        job.state, job.reason, job.updated_at = "queued", "submitted", utcnow()
        for item, batch_id in zip(job.items, submitted.item_ids, strict=True):
            item.batch_id = batch_id
        db.commit()


def folder_of(job: NotebookJob) -> Path:
    return Path(job.output_dir)
