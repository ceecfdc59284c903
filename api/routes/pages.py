"""Pages of the portal for people (server-rendered, readable without JavaScript)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from gpuaf.api.deps import CurrentUser, FacilityDep, IdentityDep
from gpuaf.api.routes.sessions import sessions_of_user
from gpuaf.templates import render
from gpuaf.units import format_mib

router = APIRouter(include_in_schema=False)
PER_PAGE = 25


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


@router.get("/sessions", response_class=HTMLResponse)
def my_sessions_page(
    user: CurrentUser,
    facility: FacilityDep,
    identity: IdentityDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    rows = sessions_of_user(facility, user.name, PER_PAGE + 1, (page - 1) * PER_PAGE)
    return HTMLResponse(
        render(
            "portal/sessions.html",
            user=user.name,
            rows=rows[:PER_PAGE],
            page=page,
            more=len(rows) > PER_PAGE,
            hub=identity.hub_auth.hub_prefix,
            prefix=identity.prefix,
            duration=_duration,
            mib=format_mib,
        )
    )
