"""HTCondor submit descriptions of notebook jobs: the local pool, or a Grid CE.

One cluster per job, ``queue N`` for N sweep items; item ``i`` is ``$(ProcId)``, passed to
``gpuaf-run-notebook`` as ``--item``. The job's folder (``~/gpuaf-jobs/<id>/``) is its
``initialdir``: ``manifest.json`` and ``notebook.ipynb`` go in with the job, ``item-<i>/``
comes back. Values come from :mod:`gpuaf.spawners.backends.htcondor_submit` and its
quoting helpers; the description is proved to round-trip through ``htcondor2.Submit``.

* local pool: the session description (:func:`~gpuaf.spawners.backends.htcondor_submit.build`:
  container universe with ``sessions.image``, the slice's GPU request, accounting), with
  the item's argument and file transfer of the job folder;
* Grid: ``universe = grid`` with the site's ``grid_resource``
  (``arc https://<endpoint>/arex/rest/1.0`` or ``condor <host> <host>:<port>``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import htcondor2

from gpuaf.notebooks.manifest import MANIFEST, NOTEBOOK
from gpuaf.notebooks.plan import JobPlan
from gpuaf.settings import HOST_PORT, Settings
from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.htcondor_jobs import checked_submit
from gpuaf.spawners.backends.htcondor_quote import (
    _quote_words,
    count,
    plain_text,
    quote_environment,
    refuse,
)
from gpuaf.spawners.backends.htcondor_submit import (
    ABS_PATH,
    SECRETS_FILE,
    SubmitConfig,
    _tags,
    build,
    executable,
    gpu_request,
)

ENDPOINT = re.compile(HOST_PORT)
QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")
ITEM = "$(ProcId)"  # expanded by HTCondor for each job of the cluster
CE_PORT = 9619
COMMAND = ("gpuaf-job", "gpuaf-run-notebook", MANIFEST)


def job_spec(plan: JobPlan, settings: Settings, command: tuple[str, ...] = COMMAND) -> JobSpec:
    """The notebook job as the backends' JobSpec (shared with :mod:`.slurm`)."""
    m = plan.manifest
    env = {
        **settings.sessions.environment,
        "GPUAF_NOTEBOOK_JOB": m.job_id,
        "GPUAF_SECRETS_SHARED": "1",  # the items of a job read one secrets file
        **({"HOME": str(plan.home)} if plan.site is None else {}),  # a CE sets its own
    }
    tags = {"portal": "gpuaf", "user": plan.user, "job": m.job_id, "profile": plan.profile.name}
    return JobSpec(
        name=f"gpuaf-nb-{m.job_id}",
        user=plan.user,
        profile=plan.profile,
        command=command,
        env=env,
        workdir=plan.job_dir,
        tags=tags,
        image=plan.image,
        accounting_group=plan.accounting_group,
    )


def _program(spec: JobSpec) -> dict[str, str]:
    """executable and arguments; $(ProcId) is the one word HTCondor expands in them."""
    exe, args = executable(spec.command)
    words = [plain_text(w, "A command argument") for w in args]
    arguments = _quote_words([*words, "--item", ITEM, "--output-dir", "."])
    return {"executable": exe, "transfer_executable": "false", "arguments": arguments}


def _files(plan: JobPlan, with_secrets: bool) -> dict[str, str]:
    job_dir = str(plan.job_dir)
    if not ABS_PATH.match(job_dir):
        raise refuse(
            f"The job folder {job_dir} may only hold letters, digits and _ . + - /; "
            "HTCondor cannot be given it safely."
        )
    inputs = [MANIFEST, NOTEBOOK, *([SECRETS_FILE] if with_secrets else [])]
    return {
        "initialdir": job_dir,
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_input_files": ",".join(inputs),
        "transfer_output_files": f"item-{ITEM}",
        "output": f"item-{ITEM}.out",
        "error": f"item-{ITEM}.err",
        "log": "job.log",
    }


def local_description(plan: JobPlan, settings: Settings, *, with_secrets: bool) -> dict[str, str]:
    """The local pool's description: the session's (container, slice, accounting) + items."""
    cfg = settings.backend.htcondor
    config = SubmitConfig("gpuaf", cfg.accounting_group_prefix, cfg.mps_pipe_directory)
    spec = job_spec(plan, settings)
    desc = build(spec, config, PurePosixPath(plan.job_dir), with_secrets=with_secrets)
    desc |= _program(spec)
    desc |= _files(plan, with_secrets)
    return desc


def grid_resource(site) -> str:
    endpoint = site.endpoint
    if not ENDPOINT.match(endpoint):
        raise refuse(f"The endpoint {endpoint!r} of the grid site is not host[:port]")
    if site.kind == "arc":
        return f"arc https://{endpoint}/arex/rest/1.0"
    host, _, port = endpoint.partition(":")
    return f"condor {host} {host}:{port or CE_PORT}"


def grid_description(plan: JobPlan, settings: Settings) -> dict[str, str]:
    """``universe = grid`` to the plan's site: the CE runs the job in the site's batch system."""
    site, profile = plan.site, plan.profile
    if site is None:
        raise refuse("The job has no grid site")
    desc = {"universe": "grid", "grid_resource": grid_resource(site)}
    spec = job_spec(plan, settings)
    desc |= _program(spec)
    desc["environment"] = quote_environment(spec.env, {"GPUAF_JOB_ID": "$(ClusterId).$(ProcId)"})
    desc |= _files(plan, with_secrets=False)
    desc["request_cpus"] = str(count(profile.cpus, "cpus", 1, 4096))
    desc["request_memory"] = str(count(profile.memory, "memory"))
    if profile.kind != "cpu":
        desc["request_gpus"] = gpu_request(profile)["request_gpus"]
    if site.token_file:
        desc["scitokens_file"] = _path(site.token_file, "token_file")
    if site.x509_proxy:
        desc["x509userproxy"] = _path(site.x509_proxy, "x509_proxy")
    if site.kind == "arc":
        if site.queue:
            desc["arc_resources"] = f"<QueueName>{_queue(site.queue)}</QueueName>"
        if site.arc_rte:
            desc["arc_rte"] = ",".join(_rte(r) for r in site.arc_rte)
    else:  # HTCondor-CE: the attributes its job router reads
        desc["MY.xcount"] = desc["request_cpus"]
        desc["MY.maxMemory"] = desc["request_memory"]
        desc["MY.maxWallTime"] = str(max(1, count(profile.walltime, "walltime") // 60))
        if site.queue:
            desc["MY.remote_queue"] = f'"{_queue(site.queue)}"'
    desc["batch_name"] = spec.name
    desc |= _tags(spec.tags, SubmitConfig(), profile.name, plan.user)
    return desc


def _path(value: str, what: str) -> str:
    if not ABS_PATH.match(value):
        raise refuse(f"The grid site's {what} {value!r} is not a plain absolute path")
    return value


def _queue(value: str) -> str:
    if not QUEUE.match(value):
        raise refuse(f"The grid site's queue {value!r} may only hold letters, digits and _ . -")
    return value


def _rte(value: str) -> str:
    if not RTE.match(value):
        raise refuse(f"The ARC runtime environment {value!r} is not a plain label")
    return value


def description(
    plan: JobPlan, settings: Settings, *, with_secrets: bool = True
) -> tuple[htcondor2.Submit, int]:
    """The checked Submit object and the number of jobs to queue (one per item)."""
    if plan.site is None:
        desc = local_description(plan, settings, with_secrets=with_secrets)
    else:
        desc = grid_description(plan, settings)
    sub = checked_submit(desc, ())
    sub.setQArgs(str(count(plan.count, "items", 1, 100_000)))  # queue N: ProcId 0 .. N-1
    return sub, plan.count


def submit_file(plan: JobPlan, settings: Settings, *, with_secrets: bool = True) -> str:
    """The description as condor_submit reads it, ``queue N`` included."""
    sub, _n = description(plan, settings, with_secrets=with_secrets)
    return str(sub)
