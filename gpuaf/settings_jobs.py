"""Settings of notebook jobs and the Grid sites they may go to."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpuaf.profiles import MemoryMiB
from gpuaf.settings_base import Strict

GRID_SITE_NAME = r"^[a-z0-9][a-z0-9-]{0,30}$"
HOST_PORT = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:[0-9]{1,5})?$"
PLAIN_PATH = r"^/[A-Za-z0-9_.+/-]*$"


class GridSiteSettings(Strict):
    kind: Literal["arc", "htcondor-ce"] = Field(
        description="arc: an ARC CE (grid_resource = arc https://<endpoint>/arex/rest/1.0); "
        "htcondor-ce: an HTCondor-CE (grid_resource = condor <host> <host>:<port, 9619>)."
    )
    endpoint: str = Field(
        pattern=HOST_PORT, description="host[:port] of the CE, e.g. ce01.example.org:9619."
    )
    queue: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Batch queue at the site (ARC: QueueName; HTCondor-CE: remote_queue).",
    )
    token_file: str | None = Field(
        None,
        pattern=PLAIN_PATH,
        description="Token file on the submit host the CE accepts (scitokens_file).",
    )
    x509_proxy: str | None = Field(
        None, pattern=PLAIN_PATH, description="X.509 proxy on the submit host (x509userproxy)."
    )
    arc_rte: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")]] = Field(
        [], description="ARC runtime environments the job asks for (arc only), e.g. ENV/PROXY."
    )

    @model_validator(mode="after")
    def _kind_rules(self) -> GridSiteSettings:
        port = self.endpoint.rpartition(":")[2] if ":" in self.endpoint else None
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError(f"endpoint {self.endpoint!r}: the port must be 1 to 65535")
        if self.arc_rte and self.kind != "arc":
            raise ValueError("arc_rte belongs to kind arc sites")
        if self.kind == "arc" and not (self.token_file or self.x509_proxy):
            raise ValueError("an arc site needs token_file or x509_proxy (ARC requires one)")
        return self


class NotebookJobSettings(Strict):
    max_notebook_size: Annotated[MemoryMiB, Field(ge=1, le=1024)] = Field(
        10, description="Largest notebook that may be submitted, e.g. 10M."
    )
    max_sweep_items: int = Field(
        100, ge=1, le=10000, description="Most items (parameter sets) one submission may run."
    )
    output_dir: str = Field(
        "gpuaf-jobs",
        pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,127}$",
        description="Folder of notebook jobs, relative to the user's home: each job gets "
        "<output_dir>/<job id>/ with its notebook and one item-<i>/ folder per item.",
    )
    grid_sites: dict[Annotated[str, Field(pattern=GRID_SITE_NAME)], GridSiteSettings] = Field(
        {},
        description="Grid computing elements notebook jobs may target (--target grid:SITE), "
        "submitted through HTCondor's grid universe.",
    )

    @model_validator(mode="after")
    def _relative(self) -> NotebookJobSettings:
        if ".." in self.output_dir.split("/"):
            raise ValueError("output_dir must stay inside the user's home (no '..')")
        return self


class DaskSettings(Strict):
    max_workers: int = Field(
        16,
        ge=1,
        le=1000,
        description="Most workers one Dask cluster (gpuaf.dask.facility_cluster) may run at "
        "once; each worker is a batch job on the cluster's slice.",
    )
    death_timeout: int = Field(
        120,
        ge=10,
        le=3600,
        description="Seconds a worker waits for its scheduler (the notebook's kernel) before "
        "it ends its batch job by itself.",
    )
