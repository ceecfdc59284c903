"""The usage and efficiency report against figures worked out by hand (SQLite, PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import (
    GpuSample,
    NotebookJob,
    NotebookJobItem,
    SessionEvent,
    SessionRecord,
)
from gpuaf.ledger.usage import usage_report

UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


def session(db, sid, user, group, share, events, samples=()):
    db.add(SessionRecord(
        id=sid, user_name=user, profile="p", backend="local", gpu_share=share, group_name=group,
        state=events[-1][0], created_at=events[0][1], updated_at=events[-1][1],
        events=[SessionEvent(state=s, at=t) for s, t in events],
    ))  # fmt: skip
    db.flush()  # the session before its samples
    for when, device, energy, power, util in samples:
        db.add(GpuSample(
            session_id=sid, at=when, device=device, memory_used_mib=1000, memory_total_mib=80000,
            energy_j=energy, power_w=power, utilisation_pct=util,
        ))  # fmt: skip


@pytest.fixture
def ledger(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    with ledger.session() as db:
        # alice (higgs), 1 GPU, Nov 1 10:00-14:00: 4 GPU-h; energy counter +2,880,000 J
        # = 800 Wh; utilisation 50 % throughout
        session(
            db,
            "a",
            "alice",
            "higgs",
            1.0,
            [("requested", at(1, 9, 55)), ("running", at(1, 10)), ("stopped", at(1, 14))],
            [(at(1, 10 + i), "0", 720_000.0 * i, 200.0, 50.0) for i in range(5)],
        )
        # carol (higgs), a quarter GPU, Oct 31 22:00 - Nov 1 02:00: inside the period
        # 00:00-02:00, 0.5 GPU-h; no counter, 100 W for 2 h = 200 Wh; utilisation 20 %
        # inside (the 90 % reading at 23:00 is before the period)
        session(
            db,
            "c",
            "carol",
            "higgs",
            0.25,
            [
                ("requested", at(31, 21, month=10)),
                ("starting", at(31, 22, month=10)),
                ("running", at(31, 22, 1, month=10)),
                ("stopped", at(1, 2)),
            ],
            [
                (at(31, 23, month=10), "mig-0", None, 300.0, 90.0),
                (at(1, 0), "mig-0", None, 100.0, 20.0),
                (at(1, 1), "mig-0", None, 100.0, 20.0),
                (at(1, 2), "mig-0", None, 100.0, 20.0),
            ],
        )
        # bob (neutrino), 2 GPUs, from Nov 7 23:00 and still running: 1 h inside the
        # period, 2 GPU-h; no samples (occupancy unknown)
        session(
            db, "b", "bob", "neutrino", 2.0, [("requested", at(7, 22, 50)), ("running", at(7, 23))]
        )
        # never ran, and one entirely before the period: nothing
        session(db, "f", "bob", "neutrino", 1.0, [("requested", at(2, 9)), ("failed", at(2, 9, 5))])
        session(
            db,
            "o",
            "alice",
            "higgs",
            1.0,
            [
                ("requested", at(3, 9, month=10)),
                ("running", at(3, 9, month=10)),
                ("stopped", at(3, 19, month=10)),
            ],
        )
        # a notebook job of bob's: one item ran 30 min on 1 GPU, one never started
        db.add(NotebookJob(
            id="scan", user_name="bob", idempotency_key="k", request_digest="d", name="scan",
            profile="gpu-1", backend="slurm", walltime_s=3600, gpu_share=1.0,
            group_name="neutrino", output_dir="/x", state="running",
            items=[NotebookJobItem(index=0, state="succeeded", started_at=at(3, 12),
                                   finished_at=at(3, 12, 30)),
                   NotebookJobItem(index=1, state="queued")],
        ))  # fmt: skip
        db.commit()
    yield ledger
    ledger.dispose()


def test_the_report_matches_the_figures_worked_out_by_hand(ledger):
    with ledger.session() as db:
        report = usage_report(db, at(1, 0), at(8, 0), now=at(9, 0))
    higgs, neutrino = report.by_group["higgs"], report.by_group["neutrino"]
    assert higgs.gpu_hours == pytest.approx(4.5)
    assert higgs.energy_wh == pytest.approx(1000.0)
    assert higgs.occupancy == pytest.approx((4 * 0.5 + 0.5 * 0.2) / 4.5)  # 0.4667
    assert (higgs.sessions, higgs.job_items) == (2, 0)
    assert neutrino.gpu_hours == pytest.approx(2.5)
    assert neutrino.energy_wh == 0 and neutrino.occupancy is None
    assert (neutrino.sessions, neutrino.job_items) == (1, 1)
    assert report.by_user[("higgs", "alice")].gpu_hours == pytest.approx(4.0)
    assert report.by_user[("higgs", "carol")].energy_wh == pytest.approx(200.0)
    assert report.total.gpu_hours == pytest.approx(7.0)
    assert report.daily == {
        "higgs": {dt.date(2026, 11, 1): pytest.approx(4.5)},
        "neutrino": {dt.date(2026, 11, 3): pytest.approx(0.5), dt.date(2026, 11, 7): 2.0},
    }
    assert len(report.days) == 7


def test_a_collaboration_sees_its_own_group_only(ledger):
    with ledger.session() as db:
        report = usage_report(db, at(1, 0), at(8, 0), groups={"neutrino"}, now=at(9, 0))
    assert set(report.by_group) == {"neutrino"}
    assert {u for _, u in report.by_user} == {"bob"}
    assert report.total.gpu_hours == pytest.approx(2.5)


def test_a_running_session_counts_until_now(ledger):
    with ledger.session() as db:
        report = usage_report(db, at(7, 0), at(14, 0), now=at(8, 5))
    # bob's 2 GPUs from Nov 7 23:00 to now (Nov 8 05:00): 12 GPU-h, split at midnight
    assert report.by_group["neutrino"].gpu_hours == pytest.approx(12.0)
    assert report.daily["neutrino"] == {
        dt.date(2026, 11, 7): pytest.approx(2.0),
        dt.date(2026, 11, 8): pytest.approx(10.0),
    }
