"""Settings of the batch backends: local, HTCondor, Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from gpuaf.settings_base import Duration, Strict


class LocalBackendSettings(Strict):
    max_sessions: int = Field(8, ge=1, description="Sessions that may run at once.")
    simulate_gpus: str | None = Field(
        None,
        description="Fake a GPU inventory, e.g. '2xH100-80GB,H200-141GB[3g.71gb,2x1g.18gb]', "
        "so slices can be shown without GPUs. Sessions on a simulated GPU get no real device.",
    )

    @model_validator(mode="after")
    def _spec_parses(self) -> LocalBackendSettings:
        if self.simulate_gpus is not None:
            from gpuaf.gpus import parse_simulation

            parse_simulation(self.simulate_gpus)
        return self


class HTCondorSettings(Strict):
    schedd_name: str | None = Field(
        None, description="Name of the schedd to submit to; default: the local schedd."
    )
    collector: str | None = Field(
        None, description="host[:port] of the collector; default: from CONDOR_CONFIG."
    )
    accounting_group_prefix: str = Field(
        "group_",
        pattern=r"^[A-Za-z0-9_.]*$",
        description="accounting_group of a job is this prefix + the user's IAM group.",
    )
    mps_pipe_directory: str = Field(
        "/tmp/nvidia-mps",  # noqa: S108 - NVIDIA's default, a path on the workers
        pattern=r"^/[A-Za-z0-9_./-]*$",
        description="CUDA_MPS_PIPE_DIRECTORY of the MPS control daemon on the workers.",
    )
    availability_ttl: Duration = Field(
        10, description="How long one collector query answers for all open spawn forms."
    )


class SlurmSettings(Strict):
    partition: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]+$", description="Partition of session jobs."
    )
    bin_dir: Path | None = Field(
        None, description="Folder of sbatch/squeue/scancel/scontrol; default: PATH."
    )
    mps_gres: Literal["shard", "mps"] = Field(
        "shard", description="GRES that MPS profiles book: shard (shards_per_gpu) or mps (%)."
    )
    shards_per_gpu: int = Field(
        4, ge=1, le=128, description="Shards each GPU is cut into (gres.conf Count / GPUs)."
    )
    conf: Path | None = Field(
        None, description="slurm.conf of the cluster; default: $SLURM_CONF of the hub."
    )
    availability_ttl: Duration = Field(
        5, description="How long one node/queue query answers for all open spawn forms."
    )
    account_from_group: bool = Field(False, description="Pass the user's IAM group as --account.")


class BackendSettings(Strict):
    kind: Literal["local", "htcondor", "slurm"] = Field(
        "local", description="The batch system sessions run on."
    )
    local: LocalBackendSettings = Field(
        LocalBackendSettings(), description="Settings of the local backend."
    )
    htcondor: HTCondorSettings = Field(
        HTCondorSettings(), description="Settings of the HTCondor backend."
    )
    slurm: SlurmSettings = Field(SlurmSettings(), description="Settings of the Slurm backend.")
