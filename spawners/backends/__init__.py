"""Batch backends: the only code that talks to a batch system."""

from __future__ import annotations

from gpuaf.settings import Settings
from gpuaf.spawners.backends.base import Availability, Backend, JobSpec, JobState, JobStatus

__all__ = ["Availability", "Backend", "JobSpec", "JobState", "JobStatus", "make_backend"]


def make_backend(settings: Settings) -> Backend:
    """The backend the settings name, configured from them."""
    kind = settings.backend.kind
    if kind == "local":
        from gpuaf.spawners.backends.local import LocalBackend

        local = settings.backend.local
        return LocalBackend(
            settings.data_dir / "local-jobs",
            max_sessions=local.max_sessions,
            simulate_gpus=local.simulate_gpus,
        )
    if kind == "htcondor":
        from gpuaf.spawners.backends.htcondor import HTCondorBackend

        return HTCondorBackend.from_settings(settings)
    if kind == "slurm":
        from gpuaf.spawners.backends.slurm import SlurmBackend

        return SlurmBackend.from_settings(settings)
    raise ValueError(f"unknown backend {kind!r}")  # unreachable: settings validate the kind
