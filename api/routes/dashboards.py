"""Dashboard pages: a physicist's overview, the admins' usage report (no JavaScript needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select

from gpuaf.api.deps import (
    AdminUser,
    CurrentUser,
    FacilityDep,
    IdentityDep,
    visible_groups,
)
from gpuaf.api.routes.audit import audit_page
from gpuaf.api.routes.pages import common
from gpuaf.api.routes.usage import build, period, to_out
from gpuaf.charts import meter, stacked_bars
from gpuaf.facility import Facility
from gpuaf.ledger.models import FINAL_JOB_STATES, NotebookJob
from gpuaf.ledger.usage import usage_report
from gpuaf.policy import limits_for, month_start, usage_of
from gpuaf.rightsizing import hint_for
from gpuaf.templates import render

router = APIRouter(include_in_schema=False)


def _overview(facility: Facility, user) -> dict:
    settings = facility.settings
    now = dt.datetime.now(dt.UTC)
    limits = limits_for(settings, list(user.groups))
    used = usage_of(facility.ledger, user.name, now=now)
    with facility.ledger.session() as db:
        month = usage_report(db, month_start(now), now, users={user.name}, now=now)
        open_jobs = db.scalar(
            select(func.count()).select_from(NotebookJob).where(
                NotebookJob.user_name == user.name, NotebookJob.state.not_in(FINAL_JOB_STATES)
            )
        )  # fmt: skip
        allowed = settings.profiles_for(list(user.groups))
        hint = hint_for(db, user.name, allowed, {p.name: p for p in settings.profiles})
    quota = limits.gpu_hours_per_month
    return {
        "month": f"{now:%B %Y}",
        "gpu_hours": used.gpu_hours_this_month,
        "quota": quota,
        "meter": meter(used.gpu_hours_this_month, quota, label="GPU-hours this month"),
        "energy_wh": month.total.energy_wh,
        "active": used.active_sessions,
        "concurrent": limits.concurrent_slices,
        "open_jobs": open_jobs or 0,
        "hint": hint.text() if hint else None,
    }


@router.get("/overview", response_class=HTMLResponse)
async def overview(user: CurrentUser, facility: FacilityDep, identity: IdentityDep) -> HTMLResponse:
    data = await asyncio.to_thread(_overview, facility, user)
    page = render("portal/overview.html", **common(facility, user, identity, "overview"), **data)
    return HTMLResponse(page)


@router.get("/admin/usage", response_class=HTMLResponse)
async def usage_page(
    user: AdminUser,
    facility: FacilityDep,
    identity: IdentityDep,
    since: Annotated[dt.date | None, Query()] = None,
    until: Annotated[dt.date | None, Query()] = None,
    group: Annotated[str | None, Query(max_length=255)] = None,
) -> HTMLResponse:
    group = group or None
    start, end = period(since, until, dt.datetime.now(dt.UTC).date())
    report = await asyncio.to_thread(build, facility, user, start, end, group)
    scope = visible_groups(facility, user)
    choices = sorted(scope if scope is not None else facility.settings.groups)
    chart = stacked_bars(
        report.days, report.daily, title="GPU-hours per day and group", unit="GPU-h"
    )
    page = render(
        "portal/admin_usage.html", **common(facility, user, identity, "usage"),
        report=to_out(report), chart=chart, since=start.date(), until=end.date(),
        until_shown=(end - dt.timedelta(days=1)).date(), group=group, choices=choices,
        scope=sorted(scope) if scope is not None else None,
        pct=lambda v: "—" if v is None else f"{100 * v:.0f} %",
    )  # fmt: skip
    return HTMLResponse(page)


AUDIT_PER_PAGE = 50


@router.get("/admin/audit", response_class=HTMLResponse)
async def audit_log_page(
    user: AdminUser,
    facility: FacilityDep,
    identity: IdentityDep,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z.]*$", max_length=64)] = None,
    since: Annotated[dt.date | None, Query()] = None,
    until: Annotated[dt.date | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    def day(d: dt.date | None) -> dt.datetime | None:
        return dt.datetime.combine(d, dt.time(), dt.UTC) if d else None

    until_at = day(until + dt.timedelta(days=1)) if until else None  # the whole day
    result = await asyncio.to_thread(
        audit_page, facility, user, actor or None, action or None, day(since), until_at,
        AUDIT_PER_PAGE, (page - 1) * AUDIT_PER_PAGE,
    )  # fmt: skip
    filters = {"actor": actor or "", "action": action or "", "since": since or "",
               "until": until or ""}  # fmt: skip
    query = urlencode({k: v for k, v in filters.items() if v})
    page_html = render(
        "portal/admin_audit.html", **common(facility, user, identity, "audit"), result=result,
        filters=filters, page=page, more=result.total > page * AUDIT_PER_PAGE, query=query,
        scope=visible_groups(facility, user),
    )  # fmt: skip
    return HTMLResponse(page_html)
