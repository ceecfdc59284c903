"""`gpuaf submit NOTEBOOK --slice S ... --dry-run`: what a notebook job would submit.

Offline, from the settings file alone: the notebook, parameters, sweeps, slice, target
and walltime are checked exactly as a submission checks them, and the exact HTCondor
submit description (``queue N`` included) or sbatch argument list and batch script is
printed. Nothing is written and nothing is submitted. Without ``--dry-run`` the notebook
goes to the portal API (``POST /api/v1/jobs``, see :mod:`gpuaf.cli_jobs`), which checks it
again and submits it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from gpuaf.errors import PublicError
from gpuaf.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK", help="the notebook (.ipynb), in your home")
    p.add_argument("--slice", required=True, metavar="S", help="slice profile to run on")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="JSON value")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="K=V1,V2",
        help="one item per value (K=V1,V2 or K=[V1,V2]); several sweeps make a grid",
    )
    p.add_argument("--target", default="local", metavar="local|grid:SITE")
    p.add_argument("--walltime", metavar="DURATION", help="e.g. 2h (at most the slice's)")
    p.add_argument("--name", metavar="N", help="job name (default: the notebook's name)")
    p.add_argument("--backend", choices=["htcondor", "slurm"], help="default: backend.kind")
    p.add_argument("--dry-run", action="store_true", help="print the request, submit nothing")
    p.add_argument("--portal", metavar="URL", help="portal (default: $GPUAF_PORTAL_URL)")
    p.add_argument("--wait", action="store_true", help="follow the job until it has ended")
    p.add_argument("--user", metavar="NAME", help="user name (default: you)")
    p.add_argument("--groups", metavar="G1,G2", default="", help="your IAM groups")
    p.add_argument("--home", metavar="DIR", help=argparse.SUPPRESS)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from gpuaf.notebooks import htcondor, slurm
    from gpuaf.notebooks.plan import plan_job

    if not args.dry_run:
        from gpuaf import cli_jobs

        return cli_jobs.submit(settings, args)
    backend = args.backend or settings.backend.kind
    if backend not in ("htcondor", "slurm"):
        raise PublicError(
            f"The configured backend is {backend!r}, which runs no batch jobs; "
            "give --backend htcondor or --backend slurm."
        )
    home = Path(args.home or os.path.expanduser("~"))
    groups = [g for g in (x.strip() for x in args.groups.split(",")) if g]
    plan = plan_job(
        settings,
        notebook=Path(args.notebook).expanduser().absolute(),  # relative: to where you are
        home=home,
        user=args.user or getpass.getuser(),
        groups=groups,
        slice_name=args.slice,
        params=args.param,
        sweeps=args.sweep,
        target=args.target,
        walltime=args.walltime,
        name=args.name,
    )
    m = plan.manifest
    where = f"grid site {plan.site_name}" if plan.site_name else "the local queue"
    print(f"# dry run: nothing was written and nothing was submitted ({backend}, {where})")
    print(f"# job {m.job_id} (the id is assigned anew at submission): {plan.count} item(s)")
    print(f"# job folder: {plan.job_dir}/ (manifest.json, notebook.ipynb, item-<i>/)")
    for i, item in enumerate(m.items):
        print(f"#   item-{i}: {json.dumps(item)}")
    if backend == "htcondor":
        print(htcondor.submit_file(plan, settings, with_secrets=plan.site is None), end="")
    else:
        print(slurm.describe(plan, settings), end="")
    return 0
