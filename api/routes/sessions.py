from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from gpuaf.api.deps import CurrentUser, FacilityDep
from gpuaf.api.schemas import Problem, SessionEventOut, SessionUsageOut
from gpuaf.facility import Facility
from gpuaf.ledger.models import SessionRecord, utcnow
from gpuaf.ledger.samples import GpuSummary, summaries
from gpuaf.policy import _hours_in as running_hours

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

router = APIRouter(tags=["sessions"])


@router.get(
    "/sessions",
    response_model=list[SessionUsageOut],
    responses={401: {"model": Problem}},
    summary="My sessions, newest first, with the history of their states",
)
def my_sessions(
    user: CurrentUser,
    facility: FacilityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SessionUsageOut]:
    return sessions_of_user(facility, user.name, limit, offset)


def sessions_of_user(
    facility: Facility, user: str, limit: int, offset: int
) -> list[SessionUsageOut]:
    """The user's sessions, newest first, with use and, for a running one, where to reconnect."""
    query = (
        select(SessionRecord)
        .where(SessionRecord.user_name == user)
        .options(selectinload(SessionRecord.events))
        .order_by(SessionRecord.created_at.desc())
        .offset(offset)
        .limit(limit)
    )
    now = utcnow()
    with facility.ledger.session() as db:
        records = list(db.scalars(query))
        used = summaries(db, [r.id for r in records])
        return [
            SessionUsageOut(
                id=r.id, server=r.server_name, profile=r.profile, backend=r.backend,
                job_id=r.job_id, state=r.state, reason=r.reason, node=r.node,
                gpu_ids=r.gpu_ids, created_at=r.created_at, updated_at=r.updated_at,
                history=[SessionEventOut(state=e.state, at=e.at, reason=e.reason)
                         for e in r.events],
                running_s=round(running_hours(r.events, EPOCH, now) * 3600),
                gpu_hours=round(r.gpu_share * running_hours(r.events, EPOCH, now), 4),
                peak_memory_mib=used.get(r.id, GpuSummary()).peak_memory_mib,
                energy_wh=used.get(r.id, GpuSummary()).energy_wh,
                gpu_note=r.gpu_note,
                url=server_url(facility, user, r.server_name) if r.state == "running" else None,
            )
            for r in records
        ]  # fmt: skip


def server_url(facility: Facility, user: str, server: str) -> str:
    """Where a running session is reached: the hub's route to it, on its default page."""
    path = f"/user/{quote(user, safe='')}/" + (f"{quote(server, safe='')}/" if server else "")
    return path + facility.settings.sessions.default_url.lstrip("/")
