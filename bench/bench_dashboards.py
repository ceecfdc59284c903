"""The dashboards' data with 1,000 sessions and 10,000 notebook jobs in the ledger, each
next to a peer: the cheapest SQL that reads the same rows.

    .venv/bin/python bench/bench_dashboards.py [--sessions 1000] [--jobs 10000] [--rounds 5]

The ledger is SQLite in a temporary folder: 60 users in 4 groups over 30 days, each
session with a sample every 5 minutes (as compacted), each job with 3 items, 20,000 audit
events. Measured (median of the rounds; pages include their Jinja rendering):

* usage report over the 30 days, all groups (peer: one SELECT of the sessions and one
  grouped SELECT of their samples and job items);
* a user's "My jobs" page (25 of their ~170 jobs; peer: the same SELECT without gpuaf);
* the live-sessions data of a facility admin (peer: the live sessions and their last
  hour of samples, one SELECT each);
* the audit log page (peer: one SELECT of 50 events).

Figures go to bench/results/dashboards.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import func, select

from gpuaf.api.routes.admin import live_sessions
from gpuaf.api.routes.audit import audit_page
from gpuaf.api.routes.jobs import jobs_of_user
from gpuaf.api.routes.usage import to_out
from gpuaf.charts import stacked_bars
from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import (
    AuditEvent,
    GpuSample,
    NotebookJob,
    NotebookJobItem,
    SessionEvent,
    SessionRecord,
    User,
)
from gpuaf.ledger.usage import usage_report
from gpuaf.settings import EXAMPLE, load_settings
from gpuaf.templates import render

GROUPS = ["higgs", "neutrino", "higgs", "neutrino"]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SINCE = NOW - dt.timedelta(days=30)


def fill(ledger: Ledger, sessions: int, jobs: int) -> None:
    rng = random.Random(3)
    users = [f"user{i:02d}" for i in range(60)]
    with ledger.session() as db:
        for i, name in enumerate(users):
            db.add(User(name=name, groups=[GROUPS[i % 4]]))
        for i in range(sessions):
            user = rng.choice(users)
            start = SINCE + dt.timedelta(minutes=rng.randrange(30 * 24 * 60))
            hours = rng.choice([1, 2, 4, 8])
            end = start + dt.timedelta(hours=hours)
            live = end > NOW
            sid = f"s{i:05d}"
            db.add(SessionRecord(
                id=sid, user_name=user, profile="gpu-1", backend="slurm", gpu_share=1.0,
                group_name=GROUPS[int(user[4:]) % 4], state="running" if live else "stopped",
                created_at=start, updated_at=min(end, NOW),
                events=[SessionEvent(state="requested", at=start),
                        SessionEvent(state="running", at=start)]
                + ([] if live else [SessionEvent(state="stopped", at=end)]),
            ))  # fmt: skip
            db.flush()
            at = start
            while at < min(end, NOW):
                db.add(GpuSample(session_id=sid, at=at, device="0", memory_used_mib=4000,
                                 memory_total_mib=81559, utilisation_pct=40.0, power_w=200.0,
                                 energy_j=(at - start).total_seconds() * 200))  # fmt: skip
                at += dt.timedelta(minutes=5)
        for j in range(jobs):
            user = rng.choice(users)
            start = SINCE + dt.timedelta(minutes=rng.randrange(30 * 24 * 60))
            db.add(NotebookJob(
                id=f"job-{j:06d}", user_name=user, idempotency_key=f"k{j}", request_digest="-",
                name="scan", profile="gpu-1", backend="slurm", walltime_s=3600, gpu_share=1.0,
                group_name=GROUPS[int(user[4:]) % 4], output_dir=f"/homes/{user}/gpuaf-jobs/{j}",
                state="succeeded", created_at=start, updated_at=start,
                items=[NotebookJobItem(index=k, state="succeeded", parameters={"k": k},
                                       started_at=start + dt.timedelta(minutes=10 * k),
                                       finished_at=start + dt.timedelta(minutes=10 * k + 8))
                       for k in range(3)],
            ))  # fmt: skip
        for a in range(20_000):
            db.add(AuditEvent(actor=rng.choice(users), action="session.book", target="x",
                              at=SINCE + dt.timedelta(seconds=a * 120)))  # fmt: skip


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/ledger.sqlite"
        migrate(url)
        ledger = Ledger(url)
        t0 = time.perf_counter()
        fill(ledger, args.sessions, args.jobs)
        filled_s = time.perf_counter() - t0
        settings = load_settings(EXAMPLE)
        facility = SimpleNamespace(ledger=ledger, settings=settings)
        erin = SimpleNamespace(name="erin", groups=("facility-admins",), admin=True)
        page = {"user": "erin", "hub": "/hub/", "prefix": "/services/portal/", "here": "",
                "is_admin": True}  # fmt: skip

        def report_ours():
            with ledger.session() as db:
                report = usage_report(db, SINCE, NOW, now=NOW)
            chart = stacked_bars(report.days, report.daily, title="t", unit="GPU-h")
            render("portal/admin_usage.html", **page, report=to_out(report), chart=chart,
                   since=SINCE.date(), until=NOW.date(), until_shown=NOW.date(), group=None,
                   choices=[], scope=None, pct=str)  # fmt: skip

        def report_peer():
            with ledger.session() as db:
                list(
                    db.execute(
                        select(SessionRecord.id, SessionRecord.gpu_share).where(
                            SessionRecord.updated_at >= SINCE
                        )
                    )
                )
                list(
                    db.execute(
                        select(GpuSample.session_id, func.avg(GpuSample.utilisation_pct))
                        .where(GpuSample.at >= SINCE)
                        .group_by(GpuSample.session_id)
                    )
                )
                list(db.execute(select(NotebookJobItem.job_id, NotebookJobItem.started_at)
                                .where(NotebookJobItem.started_at >= SINCE)))  # fmt: skip

        def jobs_ours():
            rows = jobs_of_user(facility, "user07", 26, 0, "/services/portal/")
            render("portal/jobs.html", **page, rows=rows[:25], any_open=False, page=1, more=True)

        def jobs_peer():
            with ledger.session() as db:
                list(db.scalars(select(NotebookJob).where(NotebookJob.user_name == "user07")
                                .order_by(NotebookJob.created_at.desc()).limit(26)))  # fmt: skip

        def live_ours():
            live_sessions(facility, erin, 1)

        def live_peer():
            with ledger.session() as db:
                ids = list(
                    db.scalars(
                        select(SessionRecord.id).where(SessionRecord.state == "running").limit(26)
                    )
                )
                list(db.execute(select(GpuSample.session_id, GpuSample.utilisation_pct)
                                .where(GpuSample.session_id.in_(ids),
                                       GpuSample.at >= NOW - dt.timedelta(hours=1))))  # fmt: skip

        def audit_ours():
            result = audit_page(facility, erin, None, None, None, None, 50, 0)
            render("portal/admin_audit.html", **page, result=result, filters={}, page=1,
                   more=True, query="", scope=None)  # fmt: skip

        def audit_peer():
            with ledger.session() as db:
                list(db.scalars(select(AuditEvent).order_by(AuditEvent.at.desc()).limit(50)))
                db.scalar(select(func.count()).select_from(AuditEvent))

        cases = {
            "usage_report_30_days": (report_ours, report_peer),
            "my_jobs_page": (jobs_ours, jobs_peer),
            "live_sessions": (live_ours, live_peer),
            "audit_page": (audit_ours, audit_peer),
        }
        figures: dict = {"sessions": args.sessions, "jobs": args.jobs, "rounds": args.rounds,
                         "fill_s": round(filled_s, 1)}  # fmt: skip
        for name, (ours, peer) in cases.items():
            ours(), peer()  # warm-up
            a, b = [], []
            for _ in range(args.rounds):
                a.append(timed(ours))
                b.append(timed(peer))
            figures[name] = {
                "ours_ms": round(statistics.median(a) * 1000, 1),
                "peer_ms": round(statistics.median(b) * 1000, 1),
                "ratio": round(statistics.median(a) / statistics.median(b), 2),
            }
            f = figures[name]
            print(f"{name:<22} ours {f['ours_ms']:8.1f} ms   peer {f['peer_ms']:8.1f} ms   "
                  f"ratio {f['ratio']:.2f}")  # fmt: skip
        ledger.dispose()
    out = Path(__file__).with_name("results") / "dashboards.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
