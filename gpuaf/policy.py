"""Quotas: what a user's groups allow, what they use, and the check made at each booking."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import or_, select

from gpuaf.errors import PublicError
from gpuaf.ledger import Ledger
from gpuaf.ledger.models import (
    FINAL_STATES,
    NotebookJob,
    NotebookJobItem,
    SessionEvent,
    SessionRecord,
    utcnow,
)
from gpuaf.profiles import SliceProfile
from gpuaf.settings import Settings

RUNNING_FROM = ("starting", "running")  # GPU time counts from the job's start


class QuotaExceeded(PublicError):
    status = 403


@dataclass(frozen=True)
class Limits:
    concurrent_slices: int | None  # None: no limit
    gpu_hours_per_month: float | None


@dataclass(frozen=True)
class Usage:
    active_sessions: int
    gpu_hours_this_month: float


def limits_for(settings: Settings, groups: list[str] | tuple[str, ...]) -> Limits:
    """The most generous limit of the user's groups (no limit beats any limit)."""
    quotas = [settings.groups[g].quota for g in groups if g in settings.groups]

    def best(values: list) -> object:
        return None if not values or None in values else max(values)

    return Limits(
        best([q.concurrent_slices for q in quotas]),
        best([q.gpu_hours_per_month for q in quotas]),
    )


def month_start(now: dt.datetime) -> dt.datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def usage_of(
    ledger: Ledger, user: str, *, except_server: str | None = None, now: dt.datetime | None = None
) -> Usage:
    """Active sessions and GPU-hours this calendar month (UTC) of one user."""
    now = now or utcnow()
    since = month_start(now)
    with ledger.session() as db:
        rows = list(
            db.scalars(
                select(SessionRecord).where(
                    SessionRecord.user_name == user,
                    or_(
                        SessionRecord.state.not_in(FINAL_STATES), SessionRecord.updated_at >= since
                    ),
                )
            )
        )
        events = {
            r.id: list(db.scalars(
                select(SessionEvent).where(SessionEvent.session_id == r.id)
                .order_by(SessionEvent.id)
            ))
            for r in rows if r.gpu_share
        }  # fmt: skip
        hours = job_hours(db, user, since, now)
    active = sum(1 for r in rows if r.state not in FINAL_STATES and r.server_name != except_server)
    hours += sum(r.gpu_share * _hours_in(events[r.id], since, now) for r in rows if r.gpu_share)
    return Usage(active, round(hours, 4))


def job_hours(db, user: str, since: dt.datetime, now: dt.datetime) -> float:
    """GPU-hours of the user's notebook job items that ran since ``since``."""
    query = (
        select(NotebookJob.gpu_share, NotebookJobItem.started_at, NotebookJobItem.finished_at)
        .join(NotebookJobItem, NotebookJobItem.job_id == NotebookJob.id)
        .where(
            NotebookJob.user_name == user,
            NotebookJob.gpu_share > 0,
            NotebookJobItem.started_at.is_not(None),
            or_(NotebookJobItem.finished_at.is_(None), NotebookJobItem.finished_at >= since),
        )
    )
    total = 0.0
    for share, started, finished in db.execute(query):
        start, end = max(_aware(started), since), min(_aware(finished or now), now)
        total += share * max((end - start).total_seconds(), 0) / 3600
    return total


def _hours_in(events: list[SessionEvent], since: dt.datetime, now: dt.datetime) -> float:
    start = next((e.at for e in events if e.state in RUNNING_FROM), None)
    if start is None:
        return 0.0
    end = next((e.at for e in events if e.state in FINAL_STATES), now)
    start, end = _aware(start), _aware(end)
    return max((min(end, now) - max(start, since)).total_seconds(), 0) / 3600


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite drops the zone


def check_booking(
    settings: Settings,
    ledger: Ledger,
    user: str,
    groups: list[str],
    profile: SliceProfile,
    server: str,
) -> None:
    """Refuse a booking over quota with a message that says which quota and what is left."""
    limits = limits_for(settings, groups)
    used = usage_of(ledger, user, except_server=server)
    if limits.concurrent_slices is not None and used.active_sessions >= limits.concurrent_slices:
        raise QuotaExceeded(
            f"Your quota allows {limits.concurrent_slices} session(s) at once and you have "
            f"{used.active_sessions} running: stop one before starting another."
        )
    hours = limits.gpu_hours_per_month
    if profile.gpu_share and hours is not None and used.gpu_hours_this_month >= hours:
        raise QuotaExceeded(
            f"Your quota of {hours:g} GPU-hours this month is used up "
            f"({used.gpu_hours_this_month:.1f} used); CPU-only slices remain available."
        )


def check_job(
    settings: Settings, ledger: Ledger, user, profile: SliceProfile, now: dt.datetime | None = None
) -> None:
    """Refuse a notebook job when the user's GPU-hours this month are used up.

    Jobs wait in the batch system's queue, so the number of sessions at once does not
    limit them; their GPU time counts against the monthly GPU-hours like a session's.
    """
    hours = limits_for(settings, list(user.groups)).gpu_hours_per_month
    if not profile.gpu_share or hours is None:
        return
    used = usage_of(ledger, user.name, now=now).gpu_hours_this_month
    if used >= hours:
        raise QuotaExceeded(
            f"Your quota of {hours:g} GPU-hours this month is used up ({used:.1f} used): "
            "nothing was submitted. Jobs on CPU-only slices remain possible."
        )
