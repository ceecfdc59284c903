"""`gpuaf slices`: the catalogue with live availability, and what a booking would submit."""

from __future__ import annotations

import argparse
import asyncio
import json

from gpuaf.errors import PublicError
from gpuaf.settings import Settings


def add_arguments(slices: argparse.ArgumentParser, simulation_default: str) -> None:
    slices.add_argument("--simulate-gpus", nargs="?", const=simulation_default, metavar="SPEC")
    slices.add_argument("--json", action="store_true", help="one JSON object per profile")
    sub = slices.add_subparsers(dest="slices_command", metavar="render")
    render = sub.add_parser("render", help="print what a session on PROFILE would submit")
    render.add_argument("profile", metavar="PROFILE")
    render.add_argument("--backend", choices=["htcondor", "slurm"], required=True)
    render.add_argument("--settings", metavar="FILE", default=argparse.SUPPRESS)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "slices_command", None) == "render":
        print(render(settings, args.profile, args.backend))
        return 0
    from gpuaf.spawners.backends import make_backend

    backend = make_backend(settings)
    table = asyncio.run(backend.availability(settings.profiles))
    rows = [
        {
            **p.model_dump(mode="json"),
            "summary": p.summary(),
            "availability": {
                k: getattr(table[p.name], k)
                for k in ("capacity", "free", "busy", "waiting", "eta_s", "note")
            },
        }
        for p in settings.profiles
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'PROFILE':<{width}}  KIND  FREE/CAP  WAIT  GROUPS            DESCRIPTION")
    for r in rows:
        a = r["availability"]
        groups = ",".join(r["groups"]) or "(all)"
        print(
            f"{r['name']:<{width}}  {r['kind']:<4}  {a['free']:>4}/{a['capacity']:<3}  "
            f"{a['waiting']:>4}  {groups:<16}  {r['display_name']}: {r['summary']}"
        )
    if backend.simulated:
        print("\nGPUs are SIMULATED: sessions on GPU slices get no real device.")
    return 0


def render(settings: Settings, name: str, backend_kind: str) -> str:
    """The exact submit description / sbatch request of a session on profile ``name``."""
    from gpuaf.spawners.backends import make_backend
    from gpuaf.spawners.session_job import session_job

    profile = settings.profile(name)
    if profile is None:
        valid = ", ".join(p.name for p in settings.profiles)
        raise PublicError(f"Unknown slice profile {name!r}. Profiles: {valid}.")
    settings = settings.with_overrides(backend={"kind": backend_kind})
    spec = session_job(
        settings=settings,
        profile=profile,
        user="USER",
        user_groups=sorted(profile.groups)[:1] or ["GROUP"],
        session_id="SESSION",
        env={
            "JUPYTERHUB_API_URL": "HUB_API_URL",
            "JUPYTERHUB_API_TOKEN": "(written to the job's secrets file)",
            "JUPYTERHUB_USER": "USER",
        },
        args=[],
        port=0,
        remote=True,
    )
    return make_backend(settings).describe(spec)
