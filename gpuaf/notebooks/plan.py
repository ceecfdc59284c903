"""A notebook job planned from what the user asked for, every value checked, nothing written.

:func:`plan_job` reads and validates the notebook, checks the slice against the user's
groups, the parameters and sweeps against the notebook's parameters cell, the target
against ``notebooks.grid_sites`` and the walltime against the slice; the result is what
the backends' descriptions (:mod:`.htcondor`, :mod:`.slurm`) are built from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuaf.errors import UnknownSlice
from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.manifest import Manifest, check_job_name, name_from, new_job_id
from gpuaf.notebooks.parameters import declared_parameters, parse_param, parse_sweep, sweep_items
from gpuaf.notebooks.validation import inside_home, read_notebook_file
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.session_job import accounting_group
from gpuaf.units import duration_s, format_duration

if TYPE_CHECKING:
    from gpuaf.settings import GridSiteSettings, Settings

MIB = 1024 * 1024


@dataclass(frozen=True)
class JobPlan:
    manifest: Manifest
    profile: SliceProfile  # with the job's walltime
    job_dir: Path  # ~/<output_dir>/<job id>
    notebook_path: Path  # the user's notebook, resolved
    user: str
    home: Path  # the user's home, resolved
    accounting_group: str | None
    image: str | None
    site_name: str | None = None
    site: GridSiteSettings | None = None

    @property
    def count(self) -> int:
        return len(self.manifest.items)


def parse_target(target: str, settings: Settings) -> tuple[str | None, GridSiteSettings | None]:
    sites = settings.notebooks.grid_sites
    if target == "local":
        return None, None
    kind, _, name = target.partition(":")
    if kind == "grid" and name in sites:
        return name, sites[name]
    valid = ", ".join(["local", *(f"grid:{s}" for s in sites)])
    raise NotebookError(f"Unknown target {target!r}. Targets: {valid}.")


def job_walltime(profile: SliceProfile, walltime: str | int | None) -> SliceProfile:
    if walltime is None:
        return profile
    try:
        seconds = duration_s(walltime)
    except ValueError as exc:
        raise NotebookError(
            f"Walltime {walltime!r} is not a duration; use e.g. 30m, 2h or 01:30:00."
        ) from exc
    if not 60 <= seconds <= profile.walltime:
        raise NotebookError(
            f"Walltime {format_duration(seconds)} is not allowed on slice {profile.name}: "
            f"give 1m to {format_duration(profile.walltime)}."
        )
    return profile.model_copy(update={"walltime": seconds})


def plan_job(
    settings: Settings,
    *,
    notebook: str | os.PathLike[str],
    home: str | os.PathLike[str],
    user: str,
    groups: list[str],
    slice_name: str,
    **fields: Any,
) -> JobPlan:
    """The job of the notebook file ``notebook`` (in ``home``); raises a NotebookError."""
    profile_for(settings, groups, slice_name)  # in the order a user fixes things
    parse_target(fields.get("target", "local"), settings)
    path, nb = read_notebook_file(
        notebook, home, max_size=settings.notebooks.max_notebook_size * MIB
    )
    return plan_notebook(
        settings, nb=nb, source=path, home=home, user=user, groups=groups,
        slice_name=slice_name, **fields,
    )  # fmt: skip


def profile_for(settings: Settings, groups: list[str], slice_name: str) -> SliceProfile:
    allowed = settings.profiles_for(groups)
    profile = next((p for p in allowed if p.name == slice_name), None)
    if profile is None:
        raise UnknownSlice(slice_name, [p.name for p in allowed])
    return profile


def plan_notebook(
    settings: Settings,
    *,
    nb: Any,
    source: Path,
    home: str | os.PathLike[str],
    user: str,
    groups: list[str],
    slice_name: str,
    params: Sequence[str] = (),
    sweeps: Sequence[str] = (),
    target: str = "local",
    walltime: str | int | None = None,
    name: str | None = None,
    job_id: str | None = None,
) -> JobPlan:
    """The job of an already validated notebook ``nb``; raises a NotebookError."""
    cfg = settings.notebooks
    profile = profile_for(settings, groups, slice_name)
    site_name, site = parse_target(target, settings)
    fixed = [parse_param(p) for p in params]
    swept = [parse_sweep(s) for s in sweeps]
    declared = declared_parameters(nb)
    if declared is None and (fixed or swept):
        raise NotebookError(
            f"The notebook {source.name} has no cell tagged 'parameters', so parameters cannot "
            "be set: in JupyterLab, add the tag 'parameters' to the cell that sets their defaults."
        )
    items = sweep_items(fixed, swept, limit=cfg.max_sweep_items, declared=declared)
    profile = job_walltime(profile, walltime)
    name = check_job_name(name) if name is not None else name_from(source.stem)
    job_id = job_id or new_job_id(name)
    job_dir = inside_home(Path(home) / cfg.output_dir / job_id, home)
    manifest = Manifest(
        job_id=job_id,
        name=name,
        user=user,
        items=tuple(items),
        output_dir=str(job_dir),
        kernel="python3",  # the image's own Python, where the session's packages are
        source=str(source),
        profile=profile.name,
        target=target,
    )
    return JobPlan(
        manifest=manifest,
        profile=profile,
        job_dir=job_dir,
        notebook_path=source,
        user=user,
        home=Path(home).resolve(),
        accounting_group=accounting_group(groups, profile),
        image=settings.sessions.image,
        site_name=site_name,
        site=site,
    )
