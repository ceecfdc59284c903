"""Dask clusters in the portal: check a request, record the cluster, say what workers carry.

``POST /api/v1/clusters`` (from :func:`gpuaf.dask.facility_cluster`) is checked
completely before anything is written: the fields, the slice against the user's groups,
the number of workers against ``dask.max_workers``, the walltime against the slice, the
GPU-hours quota. Then one row of kind ``dask`` is recorded, the folder of the workers'
logs made in the user's home, and the answer names the directives every worker job must
carry (:func:`gpuaf.dask_workers.worker_request`). The portal then follows the workers in
the batch system (:mod:`gpuaf.api.dask_follow`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gpuaf.api.identity import PortalUser
from gpuaf.dask_workers import WorkerPlan, worker_request
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.homes import home_of
from gpuaf.ledger.models import NotebookJob
from gpuaf.notebooks.manifest import check_job_name, new_job_id
from gpuaf.notebooks.plan import job_walltime, profile_for
from gpuaf.notebooks.validation import inside_home
from gpuaf.policy import check_job
from gpuaf.spawners.session_job import accounting_group

FIELDS = ("slice", "workers", "walltime", "name")
LOCAL_REASON = "Its workers run inside your session, on your session's slice."


class ClusterError(PublicError):
    status = 400


def check_request(body: object, max_workers: int) -> dict[str, Any]:
    """The request's fields, each checked; raises a ClusterError saying what is allowed."""
    if not isinstance(body, dict):
        raise ClusterError(
            f"The request must be a JSON object with the fields {', '.join(FIELDS)}."
        )
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ClusterError(f"Unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}.")
    slice_name = body.get("slice")
    if not isinstance(slice_name, str) or not slice_name:
        raise ClusterError("slice must be the name of a slice profile, e.g. mig-1g.18gb.")
    workers = body.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= max_workers:
        raise ClusterError(f"workers must be a whole number from 1 to {max_workers}.")
    walltime = body.get("walltime")
    if walltime is not None and not isinstance(walltime, str | int):
        raise ClusterError("walltime must be a duration such as 30m, 2h or 01:30:00.")
    name = body.get("name") or "dask"
    if not isinstance(name, str):
        raise ClusterError("name must be text: 1 to 40 letters, digits and _ . -.")
    return {"slice": slice_name, "workers": workers, "walltime": walltime, "name": name}


def plan_cluster(
    facility: Facility, user: PortalUser, body: object
) -> tuple[WorkerPlan, dict[str, Any]]:
    settings = facility.settings
    fields = check_request(body, settings.dask.max_workers)
    groups = list(user.groups)
    profile = profile_for(settings, groups, fields["slice"])
    try:
        profile = job_walltime(profile, fields["walltime"])
        cluster_id = new_job_id(check_job_name(fields["name"]))
    except PublicError as exc:
        raise ClusterError(str(exc)) from exc
    home = home_of(settings, user.name)
    log_dir = inside_home(home / settings.notebooks.output_dir / cluster_id, home)
    plan = WorkerPlan(cluster_id, user.name, profile, accounting_group(groups, profile), log_dir)
    return plan, fields


def _record(facility: Facility, user: PortalUser, plan: WorkerPlan, fields: dict) -> None:
    local = facility.backend.name == "local"
    job = NotebookJob(
        id=plan.cluster_id, kind="dask", workers=fields["workers"], user_name=user.name,
        idempotency_key=str(uuid.uuid4()), request_digest="", name=fields["name"],
        source="", profile=plan.profile.name, target="local", backend=facility.backend.name,
        batch_id=None, walltime_s=plan.profile.walltime,
        # local workers share the session's slice, which the session already counts
        gpu_share=0.0 if local else plan.profile.gpu_share,
        group_name=plan.accounting_group, output_dir=str(plan.log_dir), environment={},
        state="running" if local else "queued",
        reason=LOCAL_REASON if local else "Waiting for the notebook to start its workers.",
        items=[],
    )  # fmt: skip
    plan.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with facility.ledger.session() as db:
        db.add(job)
        db.commit()


async def create(facility: Facility, user: PortalUser, body: object) -> tuple[str, dict[str, Any]]:
    """The new cluster's id and what its workers carry; nothing is recorded on a refusal."""
    plan, fields = await asyncio.to_thread(plan_cluster, facility, user, body)
    await asyncio.to_thread(check_job, facility.settings, facility.ledger, user, plan.profile)
    request = worker_request(plan, facility.settings, facility.backend.name)  # may refuse
    await asyncio.to_thread(_record, facility, user, plan, fields)
    return plan.cluster_id, request | {"workers": fields["workers"]}
