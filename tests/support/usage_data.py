"""Realistic generated use for the dashboards: sessions with GPU samples and notebook jobs.

Deterministic (a seeded generator). Everything goes into the month *before* ``now`` so
this month's quotas of the shared test portal stay untouched, except ``this_month`` for
one user (small sessions, for the overview and its right-sizing hint). Every row id
starts with ``gen-``; :func:`remove` deletes them again.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import delete

from gpuaf.ledger import Ledger
from gpuaf.ledger.models import (
    GpuSample,
    NotebookJob,
    NotebookJobItem,
    SessionEvent,
    SessionRecord,
)

USERS = {"alice": "higgs", "bob": "neutrino", "carol": "higgs", "dana": "higgs"}
SHARES = {"mig-1g.18gb": 1 / 7, "mig-3g.71gb": 3 / 7, "gpu-1": 1.0, "gpu-2": 2.0}
STEP = dt.timedelta(minutes=10)


def previous_month(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - dt.timedelta(days=1)).replace(day=1)
    return start, first


def _session(db, sid, user, group, profile, share, start, end, peak, util, watts):
    db.add(SessionRecord(
        id=sid, user_name=user, server_name="", profile=profile, backend="local",
        gpu_share=share, group_name=group, state="stopped", created_at=start,
        updated_at=end, events=[
            SessionEvent(state="requested", at=start - dt.timedelta(minutes=1)),
            SessionEvent(state="running", at=start), SessionEvent(state="stopped", at=end),
        ],
    ))  # fmt: skip
    db.flush()
    at, joules = start, 0.0
    while at <= end:
        db.add(GpuSample(
            session_id=sid, at=at, device="0", memory_used_mib=peak if at == start + STEP
            else peak // 2, memory_total_mib=81559, utilisation_pct=util, power_w=watts,
            energy_j=joules,
        ))  # fmt: skip
        at += STEP
        joules += watts * STEP.total_seconds()


def fill(ledger: Ledger, now: dt.datetime, this_month_user: str = "alice") -> dict:
    """Insert the data; returns the fixed session whose figures a test checks by hand."""
    rng = random.Random(7)
    start, end = previous_month(now)
    days = (end - start).days
    with ledger.session() as db:
        for user, group in USERS.items():
            for i in range(20):
                profile = rng.choice(list(SHARES))
                begin = start + dt.timedelta(
                    days=rng.randrange(days - 1), hours=rng.randrange(8, 16)
                )
                hours = rng.choice([1, 2, 3, 4, 6])
                _session(db, f"gen-{user}-{i}", user, group, profile, SHARES[profile], begin,
                         begin + dt.timedelta(hours=hours), rng.randrange(2000, 60000),
                         float(rng.randrange(5, 95)), float(rng.randrange(80, 400)))  # fmt: skip
        # the fixed one: carol in neutrino, half a GPU (MPS 50 %), 6 h on the 15th from
        # 10:00 at 100 W (energy counter +2,160,000 J = 600 Wh), 40 % utilisation
        fixed = start.replace(day=15, hour=10)
        _session(db, "gen-fixed", "carol", "neutrino", "mps-50", 0.5, fixed,
                 fixed + dt.timedelta(hours=6), 4000, 40.0, 100.0)  # fmt: skip
        for j in range(10):
            begin = start + dt.timedelta(days=rng.randrange(days - 1), hours=12)
            user = rng.choice(["alice", "bob"])
            db.add(NotebookJob(
                id=f"gen-job-{j}", user_name=user, idempotency_key=f"gen-{j}",
                request_digest="-", name=f"scan-{j}", profile="gpu-1", backend="local",
                walltime_s=7200, gpu_share=1.0, group_name=USERS[user], output_dir="/nowhere",
                state="succeeded", created_at=begin, updated_at=begin, finished_at=begin,
                items=[NotebookJobItem(index=k, state="succeeded",
                                       started_at=begin + dt.timedelta(minutes=30 * k),
                                       finished_at=begin + dt.timedelta(minutes=30 * k + 20))
                       for k in range(3)],
            ))  # fmt: skip
        # this month: five small sessions of one user on a whole GPU (the hint's case)
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        for i in range(5):
            begin = month + dt.timedelta(minutes=30 * i)
            _session(db, f"gen-now-{i}", this_month_user, USERS[this_month_user], "gpu-1", 1.0,
                     begin, begin + dt.timedelta(minutes=20), 3072, 8.0, 90.0)  # fmt: skip
        db.commit()
    return {"user": "carol", "group": "neutrino", "gpu_hours": 3.0, "energy_wh": 600.0,
            "occupancy": 0.4}  # fmt: skip


def remove(ledger: Ledger) -> None:
    with ledger.session() as db:
        ids = [i for (i,) in db.execute(
            SessionRecord.__table__.select().with_only_columns(SessionRecord.id)
            .where(SessionRecord.id.like("gen-%"))
        )]  # fmt: skip
        db.execute(delete(GpuSample).where(GpuSample.session_id.in_(ids)))
        db.execute(delete(SessionEvent).where(SessionEvent.session_id.in_(ids)))
        db.execute(delete(SessionRecord).where(SessionRecord.id.in_(ids)))
        db.execute(delete(NotebookJobItem).where(NotebookJobItem.job_id.like("gen-%")))
        db.execute(delete(NotebookJob).where(NotebookJob.id.like("gen-%")))
        db.commit()
