"""Dask on the facility's slices, from a notebook::

    from gpuaf.dask import facility_cluster
    cluster = facility_cluster(slice="mig-1g.18gb", workers=10)
    client = cluster.get_client()

:func:`facility_cluster` asks the portal first (``POST /api/v1/clusters`` with the
session's IAM token): the portal checks the slice, the number of workers and the
quota, records the cluster, and says what every worker job must carry. The answer
becomes a dask-jobqueue cluster for the portal's batch system, started with that many
workers:

* Slurm: a ``SLURMCluster`` whose jobs carry the slice's sbatch options (``--gres``,
  CPUs, memory, walltime, partition, account), named after the cluster;
* HTCondor: an ``HTCondorCluster`` whose jobs carry the slice's request (``request_GPUs``,
  ``require_gpus``, the session's container image, the accounting group) and
  ``MY.GpuafCluster``;
* the local backend: a ``LocalCluster`` inside the session, on the session's own slice.

Workers run the session's Python (``sys.executable``) with the session's
``$BEARER_TOKEN_FILE``. The portal follows the workers in the batch system, counts
their GPU time against the quota and shows them on the cluster's job page; closing the
cluster (``cluster.close()``, or leaving a ``with`` block) tells the portal, and the
cluster cannot grow beyond the workers it booked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
from typing import Any

from dask_jobqueue import HTCondorCluster, SLURMCluster
from distributed import LocalCluster

from gpuaf.cli_jobs import Portal, bearer_token
from gpuaf.errors import PublicError

log = logging.getLogger("gpuaf.dask")
PASSED_ON = ("BEARER_TOKEN_FILE", "GPUAF_PORTAL_URL")  # from the session to its workers


class Booked:
    """What every cluster of the portal shares: its id, its limit, closing tells the portal."""

    gpuaf_id: str = ""
    gpuaf_workers: int = 0
    gpuaf_portal: Portal | None = None

    def _book(self, booked: dict[str, Any], portal: Portal | None) -> None:
        self.gpuaf_id, self.gpuaf_workers = booked["id"], int(booked["workers"])
        self.gpuaf_page = booked.get("url", "")
        self.gpuaf_portal = portal

    def _check_size(self, n: int | None, jobs: int) -> None:
        wanted = max(n or 0, jobs or 0)
        if wanted > self.gpuaf_workers:
            raise ValueError(
                f"This cluster booked {self.gpuaf_workers} worker(s) on its slice; it cannot "
                f"grow to {wanted}. Close it and book a larger one with facility_cluster()."
            )

    def adapt(self, *args: Any, **kwargs: Any):
        """Adaptive scaling within the booked number (the default maximum)."""
        limit = kwargs.get("maximum_jobs", kwargs.get("maximum"))
        if limit is None:
            kwargs["maximum"] = self.gpuaf_workers
        else:
            self._check_size(int(limit), 0)
        return super().adapt(*args, **kwargs)

    async def _close(self):
        await super()._close()
        await asyncio.to_thread(self._tell_portal)

    def _tell_portal(self) -> None:
        portal, self.gpuaf_portal = self.gpuaf_portal, None
        if portal is None:
            return
        try:
            portal.call("POST", f"/jobs/{self.gpuaf_id}/cancel")
        except PublicError as exc:  # closing goes on; the portal ends it at its walltime
            log.warning("the portal was not told that cluster %s closed: %s", self.gpuaf_id, exc)


class JobQueueBooked(Booked):
    """dask-jobqueue's scale(), within the booked number."""

    def scale(self, n=None, jobs=0, memory=None, cores=None):
        self._check_size(n, jobs)
        return super().scale(n, jobs=jobs, memory=memory, cores=cores)


class FacilitySLURMCluster(JobQueueBooked, SLURMCluster):
    pass


class FacilityHTCondorCluster(JobQueueBooked, HTCondorCluster):
    pass


class FacilityLocalCluster(Booked, LocalCluster):
    def scale(self, n=0, memory=None, cores=None):
        self._check_size(n, 0)
        return super().scale(n, memory=memory, cores=cores)


def prologue(environment: dict[str, str], environ: dict[str, str] | None = None) -> list[str]:
    """The worker script's first lines: the slice's variables, then the session's token."""
    env = dict(os.environ if environ is None else environ)
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in environment.items()]
    return lines + [f"export {k}={shlex.quote(env[k])}" for k in PASSED_ON if env.get(k)]


def make_cluster(booked: dict[str, Any], portal: Portal | None = None, **kwargs: Any) -> Booked:
    """The dask-jobqueue cluster of the portal's answer ``booked``; ``kwargs`` go to it
    (e.g. ``scheduler_options``, ``interface``), except what the slice decides."""
    backend, worker, n = booked["backend"], booked["worker"], int(booked["workers"])
    fixed = {"cores", "memory", "processes", "job_extra_directives", "job_directives_skip"}
    if fixed & set(kwargs):
        raise ValueError(f"{', '.join(sorted(fixed & set(kwargs)))}: the slice decides these.")
    if backend == "local":
        cluster = FacilityLocalCluster(n_workers=n, threads_per_worker=worker["cores"], **kwargs)
        cluster._book(booked, portal)
        return cluster
    common = {
        "cores": worker["cores"],
        "memory": f"{worker['memory_mib']} MiB",
        "processes": 1,  # one worker per job: one slice each
        "python": sys.executable,
        "death_timeout": worker["death_timeout_s"],
        "job_script_prologue": prologue(worker["environment"]),
        "n_workers": n,
    }
    if backend == "slurm":
        cls, extra = (
            FacilitySLURMCluster,
            {
                "job_name": worker["job_name"],
                "job_directives_skip": ["#SBATCH"],  # all of them: the portal's replace them
                "job_extra_directives": list(worker["directives"]),
            },
        )
    elif backend == "htcondor":
        cls, extra = (
            FacilityHTCondorCluster,
            {
                "disk": "1 GiB",
                "log_directory": worker["log_directory"],
                "job_directives_skip": [
                    "RequestCpus",
                    "RequestMemory",
                    "RequestDisk",
                    "batch_name",
                ],
                "job_extra_directives": dict(worker["submit"]),
            },
        )
    else:
        raise PublicError(f"The portal runs its jobs with {backend!r}, which gpuaf.dask lacks.")
    cluster = cls.__new__(cls)
    cluster._book(booked, portal)  # before the workers start: scale() checks the limit
    cls.__init__(cluster, **(common | extra | kwargs))
    return cluster


def facility_cluster(
    slice: str,
    workers: int,
    *,
    walltime: str | None = None,
    name: str | None = None,
    portal: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> Booked:
    """Book ``workers`` Dask workers on ``slice`` through the portal and start them.

    ``walltime`` (e.g. ``"2h"``) is each worker's, at most the slice's; ``portal`` and
    ``token`` default to the session's ``$GPUAF_PORTAL_URL`` and IAM token.
    """
    url = portal or os.environ.get("GPUAF_PORTAL_URL")
    if not url:
        raise PublicError(
            "No portal URL: inside a session $GPUAF_PORTAL_URL names it; elsewhere pass portal=."
        )
    client = Portal(url.rstrip("/"), token or bearer_token())
    body = {"slice": slice, "workers": workers, "walltime": walltime, "name": name}
    booked = client.call("POST", "/clusters", json=body).json()
    return make_cluster(booked, client, **kwargs)
