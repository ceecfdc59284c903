"""Usage and efficiency over a period, per group and user: what the admins' report shows.

For each session and notebook-job item that ran during ``[since, until)``:

* **GPU-hours**: its GPU share times the hours of its run inside the period (a session runs
  from ``starting``/``running`` to its final state; an item from its start to its end);
* **energy** (Wh): from the session's GPU samples inside the period, per device the
  NVML energy counter's rise, else the integral of its power (jobs report no samples);
* **occupancy**: the mean GPU utilisation of its samples inside the period. A group's or
  user's occupancy is the mean weighted by GPU-hours, over the runs that have samples
  ("measured GPU-hours"); runs without samples do not count towards it.

``daily`` splits the GPU-hours by UTC day and group, for the chart.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gpuaf.ledger.models import (
    FINAL_STATES,
    GpuSample,
    NotebookJob,
    NotebookJobItem,
    SessionEvent,
    SessionRecord,
)
from gpuaf.ledger.samples import power_integral

RUNNING_FROM = ("starting", "running")
NO_GROUP = "(none)"


@dataclass
class Usage:
    gpu_hours: float = 0.0
    energy_wh: float = 0.0
    measured_gpu_hours: float = 0.0  # of runs with utilisation samples
    busy_gpu_hours: float = 0.0  # measured GPU-hours x their mean utilisation
    sessions: int = 0
    job_items: int = 0

    @property
    def occupancy(self) -> float | None:
        """Mean GPU utilisation (0-1) weighted by GPU-hours; None when nothing was measured."""
        return self.busy_gpu_hours / self.measured_gpu_hours if self.measured_gpu_hours else None

    def add(self, other: Usage) -> None:
        for name in ("gpu_hours", "energy_wh", "measured_gpu_hours", "busy_gpu_hours"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sessions += other.sessions
        self.job_items += other.job_items


@dataclass
class Report:
    since: dt.datetime
    until: dt.datetime
    by_user: dict[tuple[str, str], Usage] = field(default_factory=dict)  # (group, user)
    by_group: dict[str, Usage] = field(default_factory=dict)
    total: Usage = field(default_factory=Usage)
    daily: dict[str, dict[dt.date, float]] = field(default_factory=dict)  # group → day → h

    @property
    def days(self) -> list[dt.date]:
        first, last = self.since.date(), (self.until - dt.timedelta(microseconds=1)).date()
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite drops the zone


def _clip(start: dt.datetime, end: dt.datetime, since: dt.datetime, until: dt.datetime):
    start, end = max(_aware(start), since), min(_aware(end), until)
    return (start, end) if end > start else None


def _per_day(start: dt.datetime, end: dt.datetime, share: float) -> dict[dt.date, float]:
    out: dict[dt.date, float] = {}
    while start < end:
        midnight = dt.datetime.combine(start.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        stop = min(midnight, end)
        out[start.date()] = (
            out.get(start.date(), 0.0) + share * (stop - start).total_seconds() / 3600
        )
        start = stop
    return out


def _samples(db: Session, ids: list[str], since: dt.datetime, until: dt.datetime):
    """Per session: (energy in Wh or None, mean utilisation 0-1 or None) inside the period."""
    if not ids:
        return {}
    inside = (GpuSample.session_id.in_(ids), GpuSample.at >= since, GpuSample.at < until)
    rows = db.execute(
        select(
            GpuSample.session_id, GpuSample.device, func.min(GpuSample.energy_j),
            func.max(GpuSample.energy_j), func.avg(GpuSample.utilisation_pct),
            func.count(GpuSample.utilisation_pct),
        ).where(*inside).group_by(GpuSample.session_id, GpuSample.device)
    ).all()  # fmt: skip
    joules: dict[str, float] = defaultdict(float)
    util: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for sid, device, first, last, mean, n in rows:
        if first is not None and last is not None:
            joules[sid] += last - first
        else:
            readings = db.execute(
                select(GpuSample.at, GpuSample.power_w)
                .where(*inside, GpuSample.session_id == sid, GpuSample.device == device,
                       GpuSample.power_w.is_not(None))
                .order_by(GpuSample.at)
            ).all()  # fmt: skip
            joules[sid] += power_integral([(_aware(a), p) for a, p in readings])
        if n:
            util[sid].append((float(mean), int(n)))
    out = {}
    for sid in {r[0] for r in rows}:
        parts = util.get(sid, [])
        total = sum(n for _, n in parts)
        mean = sum(m * n for m, n in parts) / total / 100 if total else None
        out[sid] = (joules[sid] / 3600 if sid in joules else None, mean)
    return out


def usage_report(
    db: Session,
    since: dt.datetime,
    until: dt.datetime,
    *,
    groups: Collection[str] | None = None,
    users: Collection[str] | None = None,
    now: dt.datetime | None = None,
) -> Report:
    """Usage in ``[since, until)``; ``groups``/``users`` limit it to those (None: all).

    Rows are read as plain columns (no ORM objects): 10,000 job items cost milliseconds.
    """
    now = now or dt.datetime.now(dt.UTC)
    report = Report(since, until)

    def account(group: str, user: str, usage: Usage, days: dict[dt.date, float]) -> None:
        report.by_user.setdefault((group, user), Usage()).add(usage)
        series = report.daily.setdefault(group, {})
        for day, hours in days.items():
            series[day] = series.get(day, 0.0) + hours

    wanted = [
        SessionRecord.created_at < until,
        or_(SessionRecord.state.not_in(FINAL_STATES), SessionRecord.updated_at >= since),
    ]
    if groups is not None:
        wanted.append(SessionRecord.group_name.in_(list(groups)))
    if users is not None:
        wanted.append(SessionRecord.user_name.in_(list(users)))
    records = {
        sid: (user, share, group)
        for sid, user, share, group in db.execute(
            select(SessionRecord.id, SessionRecord.user_name, SessionRecord.gpu_share,
                   SessionRecord.group_name).where(*wanted)
        )
    }  # fmt: skip
    starts: dict[str, dt.datetime] = {}
    ends: dict[str, dt.datetime] = {}
    events = (
        select(SessionEvent.session_id, SessionEvent.state, SessionEvent.at)
        .join(SessionRecord, SessionEvent.session_id == SessionRecord.id)
        .where(*wanted, SessionEvent.state.in_([*RUNNING_FROM, *FINAL_STATES]))
        .order_by(SessionEvent.id)
    )
    for sid, state, at in db.execute(events):
        if state in RUNNING_FROM:
            starts.setdefault(sid, at)
        elif sid in starts:
            ends.setdefault(sid, at)
    runs = {}
    for sid, start in starts.items():
        span = _clip(start, ends.get(sid, now), since, until)
        if span is not None:
            runs[sid] = span
    measured = _samples(db, list(runs), since, until)
    for sid, (start, end) in runs.items():
        user, share, group = records[sid]
        hours = share * (end - start).total_seconds() / 3600
        energy, mean = measured.get(sid, (None, None))
        usage = Usage(gpu_hours=hours, energy_wh=energy or 0.0, sessions=1)
        if mean is not None and hours:
            usage.measured_gpu_hours, usage.busy_gpu_hours = hours, hours * mean
        account(group or NO_GROUP, user, usage, _per_day(start, end, share))

    items = (
        select(NotebookJob.user_name, NotebookJob.group_name, NotebookJob.gpu_share,
               NotebookJobItem.started_at, NotebookJobItem.finished_at)
        .join(NotebookJob, NotebookJobItem.job_id == NotebookJob.id)
        .where(
            NotebookJobItem.started_at.is_not(None),
            NotebookJobItem.started_at < until,
            or_(NotebookJobItem.finished_at.is_(None), NotebookJobItem.finished_at >= since),
        )
    )  # fmt: skip
    if groups is not None:
        items = items.where(NotebookJob.group_name.in_(list(groups)))
    if users is not None:
        items = items.where(NotebookJob.user_name.in_(list(users)))
    for user, group, share, started, finished in db.execute(items):
        span = _clip(started, finished or now, since, until)
        if span is None:
            continue
        start, end = span
        hours = share * (end - start).total_seconds() / 3600
        days = _per_day(start, end, share)
        account(group or NO_GROUP, user, Usage(hours, job_items=1), days)
    for (group, _user), usage in report.by_user.items():
        report.by_group.setdefault(group, Usage()).add(usage)
        report.total.add(usage)
    return report
