"""The small abstract interface every batch backend implements.

Backends are the only code that talks to a batch system. They take a
:class:`JobSpec` built from a slice profile and answer in :class:`JobStatus` and
:class:`Availability`; the spawner and the portal API share them.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from gpuaf.profiles import SliceProfile


class JobState(enum.StrEnum):
    PENDING = "pending"  # accepted, waiting for a slot
    HELD = "held"  # the batch system put it on hold; reason says why
    RUNNING = "running"
    DONE = "done"  # ended by itself, exit code 0
    FAILED = "failed"  # ended by itself with an error
    CANCELLED = "cancelled"  # removed by us or an admin
    UNKNOWN = "unknown"  # the batch system no longer knows it

    @property
    def final(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobSpec:
    """What to run, for whom, on which slice. Every value here is already validated."""

    name: str
    user: str
    profile: SliceProfile
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None  # container image, where the backend runs containers
    accounting_group: str | None = None  # the user's IAM group the job is accounted to
    # Environment variables whose values must never appear in a job ad, a submit
    # description, a command line or a log (tokens). A batch backend writes them to a
    # file of mode 0600 that only the job reads, and names that file in the job's
    # environment as GPUAF_SECRETS_FILE; `gpuaf-job` (the job's first command) loads it.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    host: str | None = None
    reason: str = ""
    exit_code: int | None = None
    gpus: tuple[str, ...] = ()
    queue_position: int | None = None  # 1 = next among the jobs waiting for this profile
    gpu_utilisation: float | None = None  # e.g. HTCondor GPUsUsage (0-1), where published
    gpu_memory_mib: float | None = None  # e.g. HTCondor GPUsMemoryUsage, where published


@dataclass(frozen=True)
class Availability:
    """For one profile: how many could run at all, could start now, run now, wait."""

    profile: str
    capacity: int
    free: int
    busy: int = 0
    waiting: int = 0
    note: str = ""
    eta_s: int | None = None  # estimated wait before a new job starts, where known


@dataclass(frozen=True)
class SliceUse:
    """One part of a GPU as the admins' node map draws it."""

    label: str  # e.g. "MIG 1g.18gb", "whole GPU", "MPS 25 %"
    state: str  # free | busy | drained
    share: float = 1.0  # the part of the GPU it stands for (MIG g/7, MPS percentage)
    user: str | None = None  # whose, when busy with a portal job
    profile: str | None = None


@dataclass(frozen=True)
class GpuView:
    index: str
    model: str
    memory_mib: int | None
    slices: tuple[SliceUse, ...]


@dataclass(frozen=True)
class NodeView:
    name: str
    state: str  # as the batch system says it (idle, mixed, drained, ...)
    usable: bool
    gpus: tuple[GpuView, ...]
    note: str = ""


class Backend(abc.ABC):
    """A batch system seen through four calls."""

    name: ClassVar[str]
    simulated: bool = False  # True when the devices it books are not real GPUs
    # False: the spawner picks the server's port. True: the job picks it and reports it
    # to the hub (POST /hub/api/batchspawner {"port": N}), as on a remote worker.
    reports_port: ClassVar[bool] = True

    @abc.abstractmethod
    async def submit(self, spec: JobSpec) -> str:
        """Submit one job; return its id. Raise a PublicError the user may read on refusal."""

    @abc.abstractmethod
    async def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of many jobs in one query; every id asked for is in the answer."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Remove a job; removing one that is already gone is not an error."""

    @abc.abstractmethod
    async def availability(self, profiles: Sequence[SliceProfile]) -> dict[str, Availability]:
        """Per profile, what the facility could give right now."""

    async def nodes(self) -> list[NodeView] | None:
        """Every node with its GPUs and their slices (free, busy and whose, drained);
        None where the backend does not report them."""
        return None

    def describe(self, spec: JobSpec) -> str:
        """The exact request this backend would send for ``spec`` (submit file, argv)."""
        return repr(spec)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default holds none."""
