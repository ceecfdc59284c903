"""Notebook jobs in the batch systems: submit N items, ask their states, cancel them.

One small class per backend over the backend's own plumbing (commands as argument
lists, the bindings in threads), so a notebook job is submitted exactly as
``gpuaf submit --dry-run`` prints it:

* ``slurm``: one ``sbatch --array=0-(N-1)`` (:mod:`.slurm`); item ``i`` is array task
  ``<id>_<i>``, followed with one ``squeue --array`` per job;
* ``htcondor``: one cluster, ``queue N`` (:mod:`.htcondor`); item ``i`` is ``<cluster>.<i>``;
* ``local``: N jobs of the local queue (first come, first served, slices respected).

Secrets (the submitter's IAM token) go to one file of mode 0600 that every item reads
(``GPUAF_SECRETS_SHARED``); the portal deletes it once the job has ended.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from gpuaf.errors import BackendError
from gpuaf.notebooks import htcondor as condor_nb
from gpuaf.notebooks import slurm as slurm_nb
from gpuaf.notebooks.htcondor import job_spec
from gpuaf.notebooks.manifest import MANIFEST
from gpuaf.notebooks.plan import JobPlan
from gpuaf.settings import Settings
from gpuaf.spawners.backends.base import Backend, JobState, JobStatus
from gpuaf.spawners.session_job import resolve_command

SECRETS_NAME = ".gpuaf-secrets.json"


@dataclass(frozen=True)
class Submitted:
    batch_id: str  # the array job / cluster; the first item's job on the local queue
    item_ids: tuple[str, ...]
    secrets_file: str | None = None


def write_private(path: Path, data: Mapping[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(dict(data), out)


class ItemJobs(abc.ABC):
    """A notebook job's items in one backend: submit, status, cancel."""

    def __init__(self, backend: Backend, settings: Settings):
        self.backend, self.settings = backend, settings

    @abc.abstractmethod
    async def submit(self, plan: JobPlan, secrets: Mapping[str, str]) -> Submitted:
        """Queue every item of the plan; all or none."""

    async def status(self, batch_id: str, item_ids: Sequence[str]) -> dict[str, JobStatus]:
        return await self.backend.status(list(item_ids))

    async def cancel(self, batch_id: str, item_ids: Sequence[str]) -> None:
        for job_id in item_ids:
            await self.backend.cancel(job_id)


class LocalItems(ItemJobs):
    """One job of the local queue per item, in the job's folder, with the user's HOME."""

    async def submit(self, plan: JobPlan, secrets: Mapping[str, str]) -> Submitted:
        ids = []
        manifest = str(plan.job_dir / MANIFEST)
        here = str(Path(resolve_command("gpuaf-run-notebook")).parent)
        for i in range(plan.count):
            command = (
                resolve_command("gpuaf-job"),
                resolve_command("gpuaf-run-notebook"),
                manifest,
                "--item",
                str(i),
            )
            spec = job_spec(plan, self.settings, command)
            env = {
                **spec.env,
                **secrets,  # the local queue keeps a waiting job's environment in a 0600 file
                "GPUAF_ITEM": str(i),
                "HOME": str(plan.job_dir.parent.parent),
                "PATH": os.pathsep.join([here, os.environ.get("PATH", os.defpath)]),
            }
            try:
                ids.append(await self.backend.submit(replace(spec, env=env)))
            except BaseException:
                for job_id in ids:  # all items or none
                    await self.backend.cancel(job_id)
                raise
        return Submitted(ids[0], tuple(ids))


class SlurmItems(ItemJobs):
    """One job array: ``sbatch --array``; one ``squeue --array`` answers for every item."""

    async def submit(self, plan: JobPlan, secrets: Mapping[str, str]) -> Submitted:
        from gpuaf.spawners.backends.slurm_commands import refusal

        backend = self.backend
        secrets_file = backend.records.new_secrets_path() if secrets else None
        argv, script = slurm_nb.request(plan, self.settings, secrets_file)
        argv[0] = backend.program("sbatch")
        if secrets_file is not None:
            write_private(secrets_file, secrets)
        try:
            result = await backend.runner(argv, script.encode())
            batch_id = result.stdout.strip().split(";")[0]
            if result.returncode != 0 or not batch_id.isdigit():
                raise refusal(plan.profile, result)
        except BaseException:
            if secrets_file is not None:
                secrets_file.unlink(missing_ok=True)
            raise
        backend._snapshot = None  # what is free has changed
        items = tuple(f"{batch_id}_{i}" if plan.count > 1 else batch_id for i in range(plan.count))
        return Submitted(batch_id, items, str(secrets_file) if secrets_file else None)

    async def status(self, batch_id: str, item_ids: Sequence[str]) -> dict[str, JobStatus]:
        from gpuaf.spawners.backends import slurm_parse
        from gpuaf.spawners.backends.slurm_commands import unreachable

        if not batch_id.isdigit():
            return {j: JobStatus(j, JobState.UNKNOWN) for j in item_ids}
        fmt = slurm_parse.JOB_FORMAT.replace("JobID:|", "JobArrayID:|", 1)
        result = await self.backend._run(
            "squeue", "--noheader", "--array", "--states=all", f"--jobs={batch_id}",
            f"--Format={fmt}",
        )  # fmt: skip
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise unreachable("squeue", result)
        rows = {r.job_id: r for r in slurm_parse.parse_jobs(result.stdout)}
        out = {}
        for job_id in item_ids:
            row = rows.get(job_id)
            if row is None:  # ended and forgotten (MinJobAge): the item's status.json says how
                out[job_id] = JobStatus(job_id, JobState.UNKNOWN)
                continue
            state, reason = slurm_parse.job_state(row)
            code = row.exit_code if state.final else None
            host = row.batch_host or row.nodes or None
            out[job_id] = JobStatus(job_id, state, host, reason, code)
        return out

    async def cancel(self, batch_id: str, item_ids: Sequence[str]) -> None:
        from gpuaf.spawners.backends.slurm_commands import unreachable

        if not batch_id.isdigit():
            return
        result = await self.backend._run("scancel", batch_id)
        gone = "Invalid job id" in result.stderr or "already completing" in result.stderr
        if result.returncode != 0 and not gone:
            raise unreachable("scancel", result)
        self.backend._snapshot = None


class HTCondorItems(ItemJobs):
    """One cluster of N procs (``queue N``), the job folder as ``initialdir``."""

    async def submit(self, plan: JobPlan, secrets: Mapping[str, str]) -> Submitted:
        backend = self.backend
        sub, count = condor_nb.description(plan, self.settings, with_secrets=bool(secrets))
        secrets_file = plan.job_dir / condor_nb.SECRETS_FILE if secrets else None
        if secrets_file is not None:
            write_private(secrets_file, secrets)
        try:
            result = await backend._call(
                "schedd", "submit", sub, count=count, spool=backend.spool_input
            )
        except Exception as exc:
            if secrets_file is not None:
                secrets_file.unlink(missing_ok=True)
            raise BackendError(
                "The batch system (HTCondor) did not accept the job; try again in a minute.",
                log_message=f"htcondor submit: {exc}",
            ) from exc
        cluster = result.cluster()
        items = tuple(f"{cluster}.{i}" for i in range(count))
        backend._snapshot = None
        return Submitted(str(cluster), items, str(secrets_file) if secrets_file else None)


def item_jobs(backend: Backend, settings: Settings) -> ItemJobs:
    kinds = {"local": LocalItems, "slurm": SlurmItems, "htcondor": HTCondorItems}
    return kinds[backend.name](backend, settings)
