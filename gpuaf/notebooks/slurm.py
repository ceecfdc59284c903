"""The sbatch request of a notebook job: a job array of N items, the same wrapper.

Built with :mod:`gpuaf.spawners.backends.slurm_request` (the slice's ``--gres``, CPUs,
memory, partition, account; the batch script with the job's environment), plus
``--array=0-(N-1)`` for a sweep: ``gpuaf-run-notebook`` reads its item from
``SLURM_ARRAY_TASK_ID``. The job runs in its folder (``--chdir``), which must be on a file
system the workers share with the user's home, and writes ``item-<i>/`` there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.htcondor import job_spec
from gpuaf.notebooks.manifest import MANIFEST
from gpuaf.notebooks.plan import JobPlan
from gpuaf.settings import Settings
from gpuaf.spawners.backends.slurm_request import SlurmOptions, batch_script, sbatch_args


def options(settings: Settings) -> SlurmOptions:
    s = settings.backend.slurm
    return SlurmOptions(s.partition, s.mps_gres, s.shards_per_gpu, s.account_from_group)


def sbatch_program(settings: Settings) -> str:
    """sbatch from ``backend.slurm.bin_dir``, else PATH; looked up, never run here."""
    bin_dir = settings.backend.slurm.bin_dir
    if bin_dir:
        return str(Path(bin_dir) / "sbatch")
    return shutil.which("sbatch") or "sbatch"


def request(
    plan: JobPlan, settings: Settings, secrets_file: Path | None = None
) -> tuple[list[str], str]:
    """sbatch's argv (program first) and the batch script (its standard input)."""
    if plan.site is not None:
        raise NotebookError(
            "Grid targets are reached through HTCondor's grid universe; "
            "use --backend htcondor (or --target local on Slurm)."
        )
    command = ("gpuaf-job", "gpuaf-run-notebook", str(plan.job_dir / MANIFEST))
    spec = job_spec(plan, settings, command)
    opts = options(settings)
    args = sbatch_args(spec, opts, plan.job_dir)
    if plan.count > 1:
        out = str(plan.job_dir).replace("%", "%%") + "/slurm-%A_%a.out"
        args = [f"--output={out}" if a.startswith("--output=") else a for a in args]
        args.append(f"--array=0-{plan.count - 1}")
    return [sbatch_program(settings), *args], batch_script(spec, opts, secrets_file)


def describe(plan: JobPlan, settings: Settings, with_secrets: bool = True) -> str:
    """sbatch's argv (JSON) and the script; the secrets file is named, never shown."""
    placeholder = (
        settings.data_dir / "slurm-spool" / "secrets" / "<one file per job>.json"
        if with_secrets
        else None
    )
    argv, script = request(plan, settings, placeholder)
    return f"sbatch argv: {json.dumps(argv)}\nbatch script (sbatch's standard input):\n{script}"
