from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from gpuaf.api.deps import CurrentUser, FacilityDep
from gpuaf.api.schemas import Me, Problem
from gpuaf.ledger.models import User, utcnow

router = APIRouter(tags=["me"])


@router.get(
    "/me",
    response_model=Me,
    responses={401: {"model": Problem}},
    summary="The calling user: groups, roles and the slices they may book",
)
def me(user: CurrentUser, facility: FacilityDep) -> Me:
    settings = facility.settings
    with facility.ledger.session() as db:
        row = db.scalars(select(User).where(User.name == user.name)).first()
        if row is None:
            db.add(User(name=user.name, groups=list(user.groups)))
        else:
            row.groups = list(user.groups)
            row.last_seen_at = utcnow()
    roles = sorted({settings.groups[g].role for g in user.groups if g in settings.groups})
    return Me(
        name=user.name,
        groups=list(user.groups),
        roles=roles,
        admin=user.admin,
        auth=user.auth,
        profiles=[p.name for p in settings.profiles_for(user.groups)],
    )
