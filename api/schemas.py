"""Response models of the portal API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    ledger: str
    backend: str


class Me(BaseModel):
    name: str
    groups: list[str]
    roles: list[str]
    admin: bool
    auth: Literal["cookie", "token"]
    profiles: list[str]


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
