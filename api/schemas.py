"""Response models of the portal API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    ledger: str
    backend: str


class QuotaOut(BaseModel):
    concurrent_slices: int | None  # None: no limit
    active_sessions: int
    gpu_hours_per_month: float | None
    gpu_hours_used: float
    gpu_hours_left: float | None


class AuditOut(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    client_addr: str
    detail: dict


class AuditPage(BaseModel):
    total: int
    offset: int
    items: list[AuditOut]


class SessionEventOut(BaseModel):
    state: str
    at: datetime
    reason: str


class SessionOut(BaseModel):
    id: str
    server: str
    profile: str
    backend: str
    job_id: str | None
    state: str
    reason: str
    node: str | None
    gpu_ids: list[str]
    created_at: datetime
    updated_at: datetime
    history: list[SessionEventOut]


class SessionUsageOut(SessionOut):
    """A session with what it used of its GPUs, as its session agent reported it."""

    running_s: int  # from the server's start to its end (or now)
    gpu_hours: float  # gpu_share x running time, as quotas count it
    peak_memory_mib: int | None
    energy_wh: float | None  # on MIG instances: the whole parent GPU's
    gpu_note: str | None
    url: str | None = None  # a running session: its address, to reconnect


class GpuSampleIn(BaseModel):
    """One NVML reading of one device."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    device: str = Field(min_length=1, max_length=128)
    memory_used_mib: int = Field(ge=0)
    memory_total_mib: int = Field(ge=0)
    utilisation_pct: float | None = Field(default=None, ge=0, le=100)
    power_w: float | None = Field(default=None, ge=0)
    energy_j: float | None = Field(default=None, ge=0)


class SessionActivityIn(BaseModel):
    """What the session's Jupyter server says it is doing."""

    model_config = ConfigDict(extra="forbid")

    kernels: int = Field(ge=0)
    busy_kernels: int = Field(ge=0)
    terminals: int = Field(ge=0)
    last_activity: datetime | None = None


class GpuSamplesIn(BaseModel):
    """A report of the session agent: a note (once), samples, and the session's activity."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000)
    samples: list[GpuSampleIn] = Field(default_factory=list, max_length=256)
    activity: SessionActivityIn | None = None


class Me(BaseModel):
    name: str
    groups: list[str]
    roles: list[str]
    admin: bool
    auth: Literal["cookie", "token", "iam"]
    profiles: list[str]
    quota: QuotaOut


class AvailabilityOut(BaseModel):
    capacity: int
    free: int
    busy: int
    waiting: int
    note: str


class SliceOut(BaseModel):
    name: str
    display_name: str
    description: str
    kind: Literal["cpu", "gpu", "mig", "mps"]
    summary: str
    gpus: int
    mig_profile: str | None
    mps_thread_percentage: int | None
    mps_pinned_memory_mib: int | None
    gpu_models: list[str]
    cpus: int
    memory_mib: int
    walltime_s: int
    availability: AvailabilityOut


class Problem(BaseModel):
    detail: str


class JobItemOut(BaseModel):
    index: int
    parameters: dict
    state: str
    reason: str
    host: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    log_url: str
    notebook_url: str | None  # the executed notebook as HTML, once it exists


class JobOut(BaseModel):
    id: str
    kind: str = "notebook"  # notebook | dask (a Dask cluster: its items are worker jobs)
    workers: int | None = None  # dask: workers at once, at most
    name: str
    source: str
    profile: str
    target: str
    backend: str
    batch_id: str | None
    state: str
    reason: str
    output_dir: str
    walltime_s: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    counts: dict[str, int]  # items per state
    items: list[JobItemOut]
    url: str  # the job's page


class TargetOut(BaseModel):
    name: str  # what a submission's target field takes: local, grid:<site>
    label: str


class ClusterOut(BaseModel):
    id: str  # the cluster's job id: its workers' job name (Slurm) / GpuafCluster (HTCondor)
    backend: str  # slurm | htcondor | local (a LocalCluster in the session)
    slice: str
    workers: int  # at most this many at once
    worker: dict[str, Any]  # what every worker job carries (directives, environment, sizes)
    url: str  # the cluster's page (a job page)
    api_url: str  # GET: the cluster and its workers; POST .../cancel: close it
