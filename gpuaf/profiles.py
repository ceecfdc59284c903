"""Slice profiles: named, typed requests for a piece of the facility.

A profile is data in the settings, never code. Each backend translates it into its
own request (HTCondor ``request_gpus``/``require_gpus``, Slurm ``--gres``, a device
list for the local backend).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gpuaf.gpus import MODELS, GpuModel, known_mig_profiles
from gpuaf.units import duration_s, format_duration, format_mib, memory_mib

MemoryMiB = Annotated[int, BeforeValidator(memory_mib)]
Duration = Annotated[int, BeforeValidator(duration_s)]
Kind = Literal["cpu", "gpu", "mig", "mps"]


class SliceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]{0,62}$", description="Slug used in URLs.")
    display_name: str = Field(min_length=1, max_length=80, description="Name on the form.")
    description: str = Field("", description="One sentence for the physicist.")
    kind: Kind = Field(description="cpu, gpu (whole GPUs), mig (a MIG instance) or mps.")
    gpus: int = Field(0, ge=0, le=16, description="Whole GPUs (kind gpu); 1 for mig and mps.")
    mig_profile: str | None = Field(None, description="MIG profile, e.g. 1g.18gb (kind mig).")
    mps_thread_percentage: int | None = Field(
        None, description="CUDA_MPS_ACTIVE_THREAD_PERCENTAGE, 1-100 (kind mps)."
    )
    mps_pinned_memory: MemoryMiB | None = Field(
        None, description="CUDA_MPS_PINNED_DEVICE_MEM_LIMIT, e.g. 20G (kind mps)."
    )
    gpu_models: list[str] = Field(
        [], description="GPU models allowed (keys of the model table, or their prefix, e.g. H100)."
    )
    cpus: int = Field(1, ge=1, le=256, description="CPU cores.")
    memory: MemoryMiB = Field(4096, description="Host memory, e.g. 8G.")
    walltime: Duration = Field(8 * 3600, description="Longest run, e.g. 8h.")
    groups: list[str] = Field([], description="IAM groups that may book it; empty: everyone.")

    @model_validator(mode="before")
    @classmethod
    def _default_gpu_count(cls, data: object) -> object:
        if isinstance(data, dict) and "gpus" not in data and data.get("kind") in ("mig", "mps"):
            data = {**data, "gpus": 1}
        return data

    @model_validator(mode="after")
    def _kind_rules(self) -> SliceProfile:
        kind = self.kind
        mig_only = {"mig_profile": self.mig_profile}
        mps_only = {
            "mps_thread_percentage": self.mps_thread_percentage,
            "mps_pinned_memory": self.mps_pinned_memory,
        }
        for key, value in {**mig_only, **mps_only}.items():
            wanted = "mig" if key in mig_only else "mps"
            if value is not None and kind != wanted:
                raise ValueError(f"{key} belongs to kind {wanted} profiles, not {kind}")
        if kind == "cpu" and (self.gpus or self.gpu_models):
            raise ValueError("a cpu profile has gpus: 0 and no gpu_models")
        if kind == "gpu" and self.gpus < 1:
            raise ValueError("gpus must be at least 1 for kind gpu")
        if kind in ("mig", "mps") and self.gpus != 1:
            raise ValueError(f"a {kind} profile books exactly one slice: gpus must be 1")
        models = self.models()
        if self.gpu_models and not models:
            raise ValueError(
                f"gpu_models {self.gpu_models} match no known GPU model; known: {', '.join(MODELS)}"
            )
        if kind == "mig":
            self._check_mig(models)
        if kind == "mps":
            self._check_mps(models)
        return self

    def _check_mig(self, models: list[GpuModel]) -> None:
        if not self.mig_profile:
            raise ValueError("a mig profile needs mig_profile, e.g. 1g.18gb")
        offered = known_mig_profiles()
        if self.mig_profile not in offered:
            raise ValueError(
                f"mig_profile {self.mig_profile!r} exists on no known GPU; "
                f"known profiles: {', '.join(sorted(offered))}"
            )
        if self.gpu_models and not any(self.mig_profile in m.mig for m in models):
            raise ValueError(
                f"mig_profile {self.mig_profile!r} is not offered by {self.gpu_models}; "
                f"it is offered by {', '.join(offered[self.mig_profile])}"
            )

    def _check_mps(self, models: list[GpuModel]) -> None:
        pct = self.mps_thread_percentage
        if pct is None or not 1 <= pct <= 100:
            raise ValueError(f"mps_thread_percentage must be 1-100 (got {pct})")
        # pinned memory must fit on every GPU the profile may land on
        limit = (
            min(m.memory_mib for m in models)
            if self.gpu_models
            else max(m.memory_mib for m in MODELS.values())
        )
        if self.mps_pinned_memory is not None and self.mps_pinned_memory > limit:
            raise ValueError(
                f"mps_pinned_memory {format_mib(self.mps_pinned_memory)} is more than the GPU has "
                f"({format_mib(limit)} at most)"
            )

    @property
    def gpu_share(self) -> float:
        """How much of a GPU one booking holds: N whole GPUs, k/7 for a MIG kg slice, the
        MPS percentage; what GPU-hours are counted in."""
        if self.kind == "gpu":
            return float(self.gpus)
        if self.kind == "mig" and self.mig_profile:
            return int(self.mig_profile.split("g", 1)[0]) / 7
        if self.kind == "mps":
            return (self.mps_thread_percentage or 100) / 100
        return 0.0

    def models(self) -> list[GpuModel]:
        """Known GPU models this profile may land on (all, if it names none)."""
        if not self.gpu_models:
            return list(MODELS.values()) if self.kind != "cpu" else []
        return [m for m in MODELS.values() if any(m.key.startswith(p) for p in self.gpu_models)]

    def summary(self) -> str:
        """One line a physicist reads on the spawn form."""
        parts = {
            "cpu": "no GPU",
            "gpu": f"{self.gpus} whole GPU" + ("s" if self.gpus > 1 else ""),
            "mig": f"MIG {self.mig_profile}",
            "mps": f"MPS {self.mps_thread_percentage} % of a GPU"
            + (f", {format_mib(self.mps_pinned_memory)}" if self.mps_pinned_memory else ""),
        }
        models = f" ({', '.join(self.gpu_models)})" if self.gpu_models else ""
        return (
            f"{parts[self.kind]}{models} · {self.cpus} CPU · {format_mib(self.memory)} RAM"
            f" · up to {format_duration(self.walltime)}"
        )
