"""Building blocks of the settings models: strict models, ports, durations, group names."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gpuaf.units import duration_s

Port = Annotated[int, Field(ge=1, le=65535)]
Duration = Annotated[int, BeforeValidator(duration_s)]
GroupName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
