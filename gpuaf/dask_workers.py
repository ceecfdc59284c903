"""Dask workers booked as a slice: what the batch system is told, and finding them again.

A cluster made by :func:`gpuaf.dask.facility_cluster` asks the portal first. The portal
checks the slice, the number of workers and the quota, records the cluster, and answers
with :func:`worker_request`: the directives every worker job must carry. They are built
by the same code as a session's or a notebook job's request, so a worker asks for the
slice exactly as a session on it would (``--gres``, CPUs, memory, walltime, partition,
account on Slurm; ``request_GPUs``/``require_gpus``, container, accounting group and the
portal's job attributes on HTCondor), plus the cluster's tag:

* Slurm: the job name is the cluster's id (``squeue --name`` finds every worker);
* HTCondor: ``MY.GpuafCluster = "<id>"`` (a schedd query finds every worker).

:func:`find_workers` is that one query per cluster; the portal follows the answers into
the cluster's items (:mod:`gpuaf.api.dask_follow`) and so into quotas and the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile
from gpuaf.settings import Settings
from gpuaf.spawners.backends.base import Backend, JobSpec, JobState, JobStatus

WORKER_COMMAND = ("dask-worker",)  # a stand-in: dask-jobqueue writes the real command
# sbatch options dask-jobqueue handles itself (submission output, environment)
SLURM_OWN = ("--parsable", "--export=")
# submit commands of the worker description that dask-jobqueue writes itself
CONDOR_OWN = {"executable", "arguments", "transfer_executable", "initialdir", "environment"}
CONDOR_OWN |= {"output", "error", "log", "should_transfer_files", "when_to_transfer_output"}
CONDOR_OWN |= {"getenv", "universe", "container_image"}


@dataclass(frozen=True)
class WorkerPlan:
    cluster_id: str
    user: str
    profile: SliceProfile  # with the cluster's walltime
    accounting_group: str | None
    log_dir: Path


def _spec(plan: WorkerPlan, settings: Settings) -> JobSpec:
    return JobSpec(
        name=plan.cluster_id,
        user=plan.user,
        profile=plan.profile,
        command=WORKER_COMMAND,
        workdir=plan.log_dir,
        tags={"user": plan.user, "cluster": plan.cluster_id},
        image=settings.sessions.image,
        accounting_group=plan.accounting_group,
    )


def slurm_request(plan: WorkerPlan, settings: Settings) -> dict[str, Any]:
    from gpuaf.notebooks.slurm import options
    from gpuaf.spawners.backends.slurm_request import job_environment, sbatch_args

    spec, opts = _spec(plan, settings), options(settings)
    args = [a for a in sbatch_args(spec, opts, plan.log_dir) if not a.startswith(SLURM_OWN)]
    return {"directives": args, "environment": job_environment(spec, opts)}


def htcondor_request(plan: WorkerPlan, settings: Settings) -> dict[str, Any]:
    from gpuaf.spawners.backends.htcondor_submit import SubmitConfig, build, mps_environment

    cfg = settings.backend.htcondor
    config = SubmitConfig("gpuaf", cfg.accounting_group_prefix, cfg.mps_pipe_directory)
    spec = _spec(plan, settings)
    desc = build(spec, config, PurePosixPath(plan.log_dir), with_secrets=False)
    submit = {k: v for k, v in desc.items() if k not in CONDOR_OWN}
    if settings.sessions.image:  # the session's image: workers run the same software
        submit["universe"] = desc["universe"]
        submit["container_image"] = desc["container_image"]
    return {"submit": submit, "environment": mps_environment(plan.profile, cfg.mps_pipe_directory)}


def worker_request(plan: WorkerPlan, settings: Settings, backend: str) -> dict[str, Any]:
    """What every worker job of the cluster carries, for ``backend``; the local backend
    needs nothing: its workers are processes of the session, inside the session's slice."""
    out: dict[str, Any] = {
        "cores": plan.profile.cpus,
        "memory_mib": plan.profile.memory,
        "walltime_s": plan.profile.walltime,
        "death_timeout_s": settings.dask.death_timeout,
        "job_name": plan.cluster_id,
        "log_directory": str(plan.log_dir),
    }
    if backend == "slurm":
        return out | slurm_request(plan, settings)
    if backend == "htcondor":
        return out | htcondor_request(plan, settings)
    return out | {"environment": {}}


# -- finding the workers again -------------------------------------------------------------
async def find_workers(backend: Backend, cluster_id: str, known: list[str]) -> dict[str, JobStatus]:
    """Every worker job of the cluster the batch system knows, and what became of ``known``
    ones it no longer lists (UNKNOWN when it forgot them)."""
    if backend.name == "slurm":
        found = await _slurm(backend, cluster_id)
    elif backend.name == "htcondor":
        found = await _htcondor(backend, cluster_id, known)
    else:
        found = {}
    for job_id in known:
        found.setdefault(job_id, JobStatus(job_id, JobState.UNKNOWN))
    return found


async def _slurm(backend: Any, cluster_id: str) -> dict[str, JobStatus]:
    from gpuaf.spawners.backends import slurm_parse
    from gpuaf.spawners.backends.slurm_commands import unreachable
    from gpuaf.spawners.backends.slurm_request import NAME

    if not NAME.match(cluster_id):
        return {}
    result = await backend._run(
        "squeue", "--noheader", "--states=all", f"--name={cluster_id}",
        f"--Format={slurm_parse.JOB_FORMAT}",
    )  # fmt: skip
    if result.returncode != 0:
        raise unreachable("squeue", result)
    out = {}
    for row in slurm_parse.parse_jobs(result.stdout):
        if (row.tags or {}).get("cluster") != cluster_id:
            continue  # the same name, not a worker of this cluster
        state, reason = slurm_parse.job_state(row)
        code = row.exit_code if state.final else None
        out[row.job_id] = JobStatus(row.job_id, state, row.batch_host or row.nodes, reason, code)
    return out


async def _htcondor(backend: Any, cluster_id: str, known: list[str]) -> dict[str, JobStatus]:
    from gpuaf.spawners.backends import htcondor_jobs as jobs
    from gpuaf.spawners.backends.htcondor import _ERRORS, UNREACHABLE
    from gpuaf.spawners.backends.htcondor_quote import tag_value

    tag = f'GpuafCluster == "{tag_value(cluster_id, "The cluster id")}"'
    try:
        queue = await backend._call("schedd", "query", constraint=tag, projection=jobs.PROJECTION)
        ads = {jobs.ad_id(ad): ad for ad in queue}
        gone = [p for p in map(jobs.parse_id, known) if p and jobs.ad_key(p) not in ads]
        if gone:
            history = await backend._call(
                "schedd", "history", constraint=jobs.ids_constraint(gone),
                projection=jobs.PROJECTION, match=len(gone),
            )  # fmt: skip
            ads |= {jobs.ad_id(ad): ad for ad in history}
    except _ERRORS as exc:
        raise BackendError(UNREACHABLE, log_message=f"htcondor dask workers: {exc}") from exc
    return {job_id: jobs.to_status(job_id, ad, None, None) for job_id, ad in ads.items()}
