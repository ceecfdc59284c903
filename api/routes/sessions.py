from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpuaf.api.deps import CurrentUser, FacilityDep
from gpuaf.api.schemas import Problem, SessionEventOut, SessionOut
from gpuaf.ledger.models import SessionRecord

router = APIRouter(tags=["sessions"])


@router.get(
    "/sessions",
    response_model=list[SessionOut],
    responses={401: {"model": Problem}},
    summary="My sessions, newest first, with the history of their states",
)
def my_sessions(
    user: CurrentUser,
    facility: FacilityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SessionOut]:
    query = (
        select(SessionRecord)
        .where(SessionRecord.user_name == user.name)
        .options(selectinload(SessionRecord.events))
        .order_by(SessionRecord.created_at.desc())
        .offset(offset)
        .limit(limit)
    )
    with facility.ledger.session() as db:
        return [
            SessionOut(
                id=r.id, server=r.server_name, profile=r.profile, backend=r.backend,
                job_id=r.job_id, state=r.state, reason=r.reason, node=r.node,
                gpu_ids=r.gpu_ids, created_at=r.created_at, updated_at=r.updated_at,
                history=[SessionEventOut(state=e.state, at=e.at, reason=e.reason)
                         for e in r.events],
            )
            for r in db.scalars(query)
        ]  # fmt: skip
