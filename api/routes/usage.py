"""Usage and efficiency per group and user over a period: JSON, CSV, for the admins."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel

from gpuaf.api.deps import AdminUser, FacilityDep, visible_groups
from gpuaf.api.schemas import Problem
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.usage import Report, Usage, usage_report

router = APIRouter(tags=["usage"])
MAX_DAYS = 400
Day = Annotated[dt.date | None, Query(description="YYYY-MM-DD (UTC)")]


class UsageOut(BaseModel):
    group: str
    user: str | None  # None: the group's total
    gpu_hours: float
    energy_wh: float
    occupancy: float | None  # mean GPU utilisation 0-1, weighted by GPU-hours
    measured_gpu_hours: float
    sessions: int
    job_items: int


class ReportOut(BaseModel):
    since: dt.datetime
    until: dt.datetime
    groups: list[UsageOut]
    users: list[UsageOut]
    daily: dict[str, dict[str, float]]  # group -> YYYY-MM-DD -> GPU-hours


def period(
    since: dt.date | None, until: dt.date | None, today: dt.date
) -> tuple[dt.datetime, dt.datetime]:
    """[since, until) as UTC datetimes; the default is this month up to today included."""
    since = since or today.replace(day=1)
    until = until or today + dt.timedelta(days=1)
    if until <= since:
        raise PublicError(f"until ({until}) must be after since ({since}).", status=400)
    if (until - since).days > MAX_DAYS:
        raise PublicError(f"A report covers at most {MAX_DAYS} days; choose a shorter period.")
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    return start, dt.datetime.combine(until, dt.time(), dt.UTC)


def build(
    facility: Facility, user, since: dt.datetime, until: dt.datetime, group: str | None
) -> Report:
    allowed = visible_groups(facility, user)
    if group is not None:
        if allowed is not None and group not in allowed:
            mine = ", ".join(sorted(allowed)) or "none"
            raise PublicError(f"You may see the groups {mine}; not {group}.", status=403)
        allowed = {group}
    with facility.ledger.session() as db:
        return usage_report(db, since, until, groups=allowed)


def _row(group: str, user: str | None, u: Usage) -> UsageOut:
    return UsageOut(
        group=group, user=user, gpu_hours=round(u.gpu_hours, 4), energy_wh=round(u.energy_wh, 2),
        occupancy=None if u.occupancy is None else round(u.occupancy, 4),
        measured_gpu_hours=round(u.measured_gpu_hours, 4), sessions=u.sessions,
        job_items=u.job_items,
    )  # fmt: skip


def to_out(report: Report) -> ReportOut:
    return ReportOut(
        since=report.since,
        until=report.until,
        groups=[_row(g, None, u) for g, u in sorted(report.by_group.items())],
        users=[_row(g, n, u) for (g, n), u in sorted(report.by_user.items())],
        daily={g: {d.isoformat(): round(h, 4) for d, h in sorted(s.items())}
               for g, s in report.daily.items()},
    )  # fmt: skip


@router.get(
    "/usage",
    response_model=ReportOut,
    responses={400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}},
    summary="GPU-hours, energy and occupancy per group and user (admins; CSV: /usage.csv)",
)
async def usage(
    user: AdminUser, facility: FacilityDep, since: Day = None, until: Day = None,
    group: str | None = None,
) -> ReportOut:  # fmt: skip
    start, end = period(since, until, dt.datetime.now(dt.UTC).date())
    return to_out(await asyncio.to_thread(build, facility, user, start, end, group))


@router.get("/usage.csv", response_class=Response, summary="The usage report as CSV")
async def usage_csv(
    user: AdminUser, facility: FacilityDep, since: Day = None, until: Day = None,
    group: str | None = None,
) -> Response:  # fmt: skip
    start, end = period(since, until, dt.datetime.now(dt.UTC).date())
    report = to_out(await asyncio.to_thread(build, facility, user, start, end, group))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["since", "until", "group", "user", "gpu_hours", "energy_wh",
                     "occupancy", "measured_gpu_hours", "sessions", "job_items"])  # fmt: skip
    for row in [*report.users, *report.groups]:
        writer.writerow([
            start.date(), end.date(), row.group, row.user or "(all)", row.gpu_hours,
            row.energy_wh, "" if row.occupancy is None else row.occupancy,
            row.measured_gpu_hours, row.sessions, row.job_items,
        ])  # fmt: skip
    name = f"gpuaf-usage-{start.date()}-{end.date()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
