"""Pages of the portal for people (server-rendered, readable without JavaScript)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from gpuaf.api.deps import CurrentUser, FacilityDep, IdentityDep, user_roles
from gpuaf.api.routes.jobs import JobId, cancel_for, jobs_of_user, one_job
from gpuaf.api.routes.sessions import sessions_of_user
from gpuaf.templates import render
from gpuaf.units import format_mib

router = APIRouter(include_in_schema=False)
PER_PAGE = 25
ADMIN_ROLES = {"facility-admin", "collaboration-admin"}


def common(facility, user, identity, here: str) -> dict:
    """What every portal page's layout needs: who, where, and whether to show admin links."""
    return {
        "user": user.name,
        "hub": identity.hub_auth.hub_prefix,
        "prefix": identity.prefix,
        "here": here,
        "is_admin": bool(ADMIN_ROLES & set(user_roles(facility, user))),
    }


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
            **common(facility, user, identity, "sessions"),
            rows=rows[:PER_PAGE],
            page=page,
            more=len(rows) > PER_PAGE,
            duration=_duration,
            mib=format_mib,
        )
    )


@router.get("/jobs", response_class=HTMLResponse)
def my_jobs_page(
    user: CurrentUser,
    facility: FacilityDep,
    identity: IdentityDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    rows = jobs_of_user(facility, user.name, PER_PAGE + 1, (page - 1) * PER_PAGE, identity.prefix)
    return HTMLResponse(
        render(
            "portal/jobs.html",
            **common(facility, user, identity, "jobs"),
            rows=rows[:PER_PAGE],
            any_open=any(j.state in ("queued", "running") for j in rows[:PER_PAGE]),
            page=page,
            more=len(rows) > PER_PAGE,
        )
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request, job_id: JobId, user: CurrentUser, facility: FacilityDep,
    identity: IdentityDep,
) -> HTMLResponse:  # fmt: skip
    job = await one_job(request, job_id, user, facility)
    context = common(facility, user, identity, "jobs")
    return HTMLResponse(render("portal/job.html", j=job, duration=_duration, **context))


@router.post("/jobs/{job_id}/cancel")
async def cancel_from_page(
    request: Request, job_id: JobId, user: CurrentUser, facility: FacilityDep,
    identity: IdentityDep,
) -> RedirectResponse:  # fmt: skip
    await cancel_for(request, job_id, user, facility)
    return RedirectResponse(f"{identity.prefix}jobs/{job_id}", 303)
