from __future__ import annotations

import asyncio

from fastapi import APIRouter

from gpuaf.api.deps import CurrentUser, FacilityDep, user_roles
from gpuaf.api.schemas import Me, Problem, QuotaOut
from gpuaf.ledger.users import upsert_user
from gpuaf.policy import limits_for, usage_of

router = APIRouter(tags=["me"])


@router.get(
    "/me",
    response_model=Me,
    responses={401: {"model": Problem}},
    summary="The calling user: groups, roles, quota and the slices they may book",
)
async def me(user: CurrentUser, facility: FacilityDep) -> Me:
    settings = facility.settings
    await asyncio.to_thread(upsert_user, facility.ledger, user.name, list(user.groups))
    limits = limits_for(settings, user.groups)
    used = await asyncio.to_thread(usage_of, facility.ledger, user.name)
    return Me(
        name=user.name,
        groups=list(user.groups),
        roles=user_roles(facility, user),
        admin=user.admin,
        auth=user.auth,
        profiles=[p.name for p in settings.profiles_for(user.groups)],
        quota=QuotaOut(
            concurrent_slices=limits.concurrent_slices,
            active_sessions=used.active_sessions,
            gpu_hours_per_month=limits.gpu_hours_per_month,
            gpu_hours_used=used.gpu_hours_this_month,
            gpu_hours_left=None
            if limits.gpu_hours_per_month is None
            else max(limits.gpu_hours_per_month - used.gpu_hours_this_month, 0.0),
        ),
    )
