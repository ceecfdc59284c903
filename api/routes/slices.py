from __future__ import annotations

from fastapi import APIRouter

from gpuaf.api.deps import CurrentUser, FacilityDep
from gpuaf.api.schemas import AvailabilityOut, Problem, SliceOut

router = APIRouter(tags=["slices"])


@router.get(
    "/slices",
    response_model=list[SliceOut],
    responses={401: {"model": Problem}},
    summary="The slice profiles the caller may book, with what is free now",
)
async def slices(user: CurrentUser, facility: FacilityDep) -> list[SliceOut]:
    profiles = facility.settings.profiles_for(user.groups)
    table = await facility.availability(profiles)
    return [
        SliceOut(
            name=p.name,
            display_name=p.display_name,
            description=p.description,
            kind=p.kind,
            summary=p.summary(),
            gpus=p.gpus,
            mig_profile=p.mig_profile,
            mps_thread_percentage=p.mps_thread_percentage,
            mps_pinned_memory_mib=p.mps_pinned_memory,
            gpu_models=p.gpu_models,
            cpus=p.cpus,
            memory_mib=p.memory,
            walltime_s=p.walltime,
            availability=AvailabilityOut(
                **{
                    k: getattr(table[p.name], k)
                    for k in ("capacity", "free", "busy", "waiting", "note")
                }
            ),
        )
        for p in profiles
    ]
