"""GPU samples downsampled and expired while the sessions' figures stay (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, inspect, select

from gpuaf.api import housekeeping
from gpuaf.api.deps import get_current_user
from gpuaf.api.identity import PortalUser
from gpuaf.api.routes import sessions as sessions_route
from gpuaf.errors import SettingsError
from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.compaction import compact_samples
from gpuaf.ledger.db import alembic_config
from gpuaf.ledger.models import GpuSample, SessionEvent, SessionRecord
from gpuaf.ledger.samples import summaries
from gpuaf.settings import LedgerSettings, load_settings

NOW = dt.datetime(2026, 3, 10, 12, 0, 7, tzinfo=dt.UTC)  # not on a bucket boundary
STEP = dt.timedelta(seconds=10)
DAY = dt.timedelta(days=1)


def power_integral_tolerance_wh(rows: list[dict], bucket: int) -> float:
    """How far the power integral (devices without an energy counter) may move.

    Inside the compacted stretch the trapezoid over bucket means spaced one bucket apart
    sums to the same as the trapezoid over every reading; but each mean stands at its
    bucket's last sample, not its middle, so the compacted stretch is shifted by about half
    a bucket against the readings: at its two ends, per device, at most half a bucket of
    the highest power is gained or lost. The bound does not grow with the session's length
    (measured on 3 days, 2 devices: +16 Wh of 54,164 Wh, 3e-4 relative).
    """
    devices = {(r["session_id"], r["device"]) for r in rows if r["power_w"] is not None}
    highest = max(r["power_w"] for r in rows if r["power_w"] is not None)
    return len(devices) * 2 * (bucket / 2) * highest / 3600


def series(sid: str, devices: list[str], start: dt.datetime, end: dt.datetime, *,
           counter: bool, seed: int) -> list[dict]:  # fmt: skip
    """Readings every 10 s: load phases of random length and level, with noise; NVML's
    energy counter (when ``counter``) grows with the power drawn."""
    rng = random.Random(seed)
    rows = []
    for device in devices:
        energy, at, left, level, memory = rng.uniform(1e5, 1e7), start, 0, 0.0, 0
        while at < end:
            if left == 0:
                left, level, memory = (
                    rng.randint(20, 250),
                    rng.uniform(60, 690),
                    rng.randint(0, 80000),
                )
            left -= 1
            power = max(level + rng.gauss(0, 15), 0.0)
            rows.append({
                "session_id": sid, "device": device, "at": at,
                "memory_used_mib": max(memory + rng.randint(-500, 500), 0),
                "memory_total_mib": 81559,
                "utilisation_pct": None if rng.random() < 0.05 else min(level / 7, 100.0),
                "power_w": round(power, 2),
                "energy_j": round(energy, 3) if counter else None,
            })  # fmt: skip
            energy += power * STEP.total_seconds()
            at += STEP
    return rows


def add_session(ledger: Ledger, sid: str, start: dt.datetime, end: dt.datetime | None) -> None:
    events = [SessionEvent(state="requested", at=start), SessionEvent(state="running", at=start)]
    if end is not None:
        events.append(SessionEvent(state="stopped", at=end, reason="stopped by the user"))
    with ledger.session() as db:
        db.add(SessionRecord(
            id=sid, user_name="alice", profile="gpu-2", backend="local", job_id=f"local-{sid}",
            state="running" if end is None else "stopped", gpu_share=2.0, events=events,
            created_at=start, updated_at=end or start,
        ))  # fmt: skip


def add_samples(ledger: Ledger, rows: list[dict]) -> None:
    with ledger.session() as db:
        db.execute(insert(GpuSample), rows)


def counts(ledger: Ledger) -> dict[str, int]:
    with ledger.session() as db:
        query = select(GpuSample.session_id, func.count()).group_by(GpuSample.session_id)
        return dict(db.execute(query).all())


def snapshot(ledger: Ledger) -> list[tuple]:
    with ledger.session() as db:
        return [tuple(r) for r in db.execute(select(GpuSample.__table__).order_by(GpuSample.id))]


def counter_span(ledger: Ledger) -> dict[tuple[str, str], tuple[float, float]]:
    with ledger.session() as db:
        query = (
            select(GpuSample.session_id, GpuSample.device)
            .add_columns(func.min(GpuSample.energy_j), func.max(GpuSample.energy_j))
            .where(GpuSample.energy_j.is_not(None))
            .group_by(GpuSample.session_id, GpuSample.device)
        )
        return {(s, d): (lo, hi) for s, d, lo, hi in db.execute(query)}


def expected_rows(rows: list[dict], settings: LedgerSettings, now: dt.datetime,
                  expired: set[str]) -> dict[str, int]:  # fmt: skip
    """What should remain: young rows as they are, each device's first row, one row per
    older bucket; nothing of expired sessions."""
    bucket = settings.samples_bucket
    horizon = (now - dt.timedelta(seconds=settings.samples_full_resolution_for)).timestamp()
    boundary = horizon // bucket * bucket
    by_device = defaultdict(list)
    for r in rows:
        by_device[r["session_id"], r["device"]].append(r["at"].timestamp())
    out: dict[str, int] = defaultdict(int)
    for (sid, _device), times in by_device.items():
        if sid in expired:
            continue
        _first, *rest = sorted(times)  # the first stays as it is
        old = {t // bucket for t in rest if t < boundary}
        out[sid] += 1 + len(old) + sum(t >= boundary for t in rest)
    return dict(out)


def utc(at: dt.datetime) -> dt.datetime:
    """Naive UTC, as SQLite gives it back; PostgreSQL answers in its session's zone."""
    return at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo else at


@pytest.fixture
def ledger(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    yield ledger
    ledger.dispose()


def sessions_api(ledger: Ledger) -> TestClient:
    app = FastAPI()
    app.state.facility = SimpleNamespace(ledger=ledger, settings=load_settings())
    app.include_router(sessions_route.router, prefix="/api/v1")
    app.dependency_overrides[get_current_user] = lambda: PortalUser(
        "alice", ("higgs",), False, "token"
    )
    return TestClient(app)


@pytest.mark.postgres
def test_three_days_of_samples_shrink_and_every_sessions_figures_stay(ledger):
    settings = LedgerSettings()  # 24 h at full resolution, 5 min buckets, kept 400 days
    start = NOW - 3 * DAY + dt.timedelta(seconds=7)
    plan = {  # session: (start, end, devices, NVML energy counter)
        "running": (start, None, ["0", "1"], True),
        "powered": (start, None, ["2", "3"], False),  # no counter: energy from power
        "ended": (NOW - 5 * DAY, NOW - 4 * DAY, ["0"], False),
        "ancient": (NOW - 501 * DAY, NOW - 500 * DAY, ["0", "1"], True),
    }
    rows = []
    for seed, (sid, (begin, end, devices, counter)) in enumerate(plan.items()):
        add_session(ledger, sid, begin, end)
        rows += series(sid, devices, begin, end or NOW, counter=counter, seed=seed)
    add_samples(ledger, rows)
    before_counts, spans = counts(ledger), counter_span(ledger)
    with ledger.session() as db:
        before = summaries(db, list(plan))

    result = compact_samples(ledger, NOW, settings=settings)

    after_counts = counts(ledger)
    expected = expected_rows(rows, settings, NOW, expired={"ancient"})
    assert after_counts == expected
    assert sum(before_counts.values()) - sum(after_counts.values()) == result.rows_removed
    assert (result.sessions_expired, result.samples_deleted) == (1, before_counts["ancient"])
    assert result.sessions_compacted == 3
    print(f"\nrows before {before_counts}, after {after_counts}: {result}")
    assert sum(after_counts.values()) < sum(before_counts.values()) / 3
    with ledger.session() as db:
        after = summaries(db, list(plan))
        stored = {r.id: r.gpu_summary_at for r in db.scalars(select(SessionRecord))}
    # running sessions: from their samples, compacted; NVML energy and peaks exactly
    assert after["running"] == before["running"]
    assert {k: v for k, v in counter_span(ledger).items() if k[0] == "running"} == {
        k: v for k, v in spans.items() if k[0] == "running"
    }  # every device's first and last counter value survive
    assert after["powered"].peak_memory_mib == before["powered"].peak_memory_mib
    powered = [r for r in rows if r["session_id"] == "powered"]
    tolerance = power_integral_tolerance_wh(powered, settings.samples_bucket)
    moved = after["powered"].energy_wh - before["powered"].energy_wh
    was, now = before["powered"].energy_wh, after["powered"].energy_wh
    print(f"power integral: {was} Wh -> {now} Wh ({moved / was:+.1e}; bound {tolerance:.0f} Wh)")
    assert abs(moved) <= tolerance
    # ended sessions: the figures stored before their samples changed, exactly
    assert after["ended"] == before["ended"] and after["ancient"] == before["ancient"]
    assert utc(stored["ended"]) == utc(stored["ancient"]) == utc(NOW)
    assert stored["running"] is None and stored["powered"] is None

    shrunk = snapshot(ledger)
    again = compact_samples(ledger, NOW, settings=settings)  # idempotent
    assert not again.changed and again.sessions_compacted == 0
    assert snapshot(ledger) == shrunk

    later = compact_samples(ledger, NOW + dt.timedelta(hours=1), settings=settings)
    assert later.sessions_compacted == 2 and later.samples_merged > 0
    assert counts(ledger) == expected_rows(rows, settings, NOW + dt.timedelta(hours=1),
                                           expired={"ancient"})  # fmt: skip
    with ledger.session() as db:
        still = summaries(db, list(plan))
    assert {k: still[k] for k in ("running", "ended", "ancient")} == {
        k: before[k] for k in ("running", "ended", "ancient")
    }
    assert abs(still["powered"].energy_wh - before["powered"].energy_wh) <= tolerance

    reply = sessions_api(ledger).get("/api/v1/sessions")  # what "my sessions" shows
    assert reply.status_code == 200, reply.text
    shown = {s["id"]: (s["peak_memory_mib"], s["energy_wh"]) for s in reply.json()}
    assert shown["ancient"] == (before["ancient"].peak_memory_mib, before["ancient"].energy_wh)
    assert shown["ended"] == (before["ended"].peak_memory_mib, before["ended"].energy_wh)
    assert shown["running"] == (before["running"].peak_memory_mib, before["running"].energy_wh)


@pytest.mark.postgres
def test_a_bucket_merges_into_one_row(ledger):
    add_session(ledger, "s", NOW - 3 * DAY, None)
    t0 = NOW - 2 * DAY
    t0 = t0.replace(minute=t0.minute // 5 * 5, second=0)  # a bucket's start
    reading = {"session_id": "s", "device": "MIG-1", "memory_total_mib": 16384}
    add_samples(ledger, [
        {**reading, "at": t0 - STEP, "memory_used_mib": 1, "memory_total_mib": 16384,
         "utilisation_pct": None, "power_w": 90.0, "energy_j": 1000.0},  # the device's first
        {**reading, "at": t0, "memory_used_mib": 5, "utilisation_pct": None,
         "power_w": 100.0, "energy_j": 1010.0},
        {**reading, "at": t0 + STEP, "memory_used_mib": 9, "memory_total_mib": 16400,
         "utilisation_pct": 40.0, "power_w": 200.0, "energy_j": 1020.0},
        {**reading, "at": t0 + 2 * STEP, "memory_used_mib": 7, "utilisation_pct": 60.0,
         "power_w": 300.0, "energy_j": 1030.0},
        {**reading, "at": t0 + 30 * STEP, "memory_used_mib": 2, "utilisation_pct": 10.0,
         "power_w": None, "energy_j": None},  # alone in the next bucket: left as it is
    ])  # fmt: skip
    result = compact_samples(ledger, NOW)
    assert (result.samples_merged, result.rows_written) == (3, 1)
    with ledger.session() as db:
        rows = db.execute(
            select(GpuSample.at, GpuSample.memory_used_mib, GpuSample.memory_total_mib,
                   GpuSample.utilisation_pct, GpuSample.power_w, GpuSample.energy_j)
            .order_by(GpuSample.at)
        ).all()  # fmt: skip
    naive = [(utc(at), *rest) for at, *rest in rows]
    n = utc(t0)
    assert naive == [
        (n - STEP, 1, 16384, None, 90.0, 1000.0),
        (n + 2 * STEP, 9, 16400, 50.0, 200.0, 1030.0),
        (n + 30 * STEP, 2, 16384, 10.0, None, None),
    ]


@pytest.mark.postgres
def test_retention_spares_running_sessions_and_can_be_off(ledger):
    add_session(ledger, "marathon", NOW - 600 * DAY, None)  # still running
    add_session(ledger, "done", NOW - 502 * DAY, NOW - 501 * DAY)
    add_samples(ledger, series("marathon", ["0"], NOW - 600 * DAY, NOW - 599 * DAY,
                               counter=True, seed=1))  # fmt: skip
    add_samples(ledger, series("done", ["0"], NOW - 502 * DAY, NOW - 501 * DAY,
                               counter=True, seed=2))  # fmt: skip
    forever = LedgerSettings(samples_keep_for=None)
    result = compact_samples(ledger, NOW, settings=forever)
    assert result.sessions_expired == 0 and set(counts(ledger)) == {"marathon", "done"}
    result = compact_samples(ledger, NOW, settings=LedgerSettings(samples_keep_for="400d"))
    assert result.sessions_expired == 1 and set(counts(ledger)) == {"marathon"}
    with ledger.session() as db:
        done = db.get(SessionRecord, "done")
        assert done.gpu_peak_memory_mib is not None and done.gpu_energy_wh > 0


@pytest.mark.postgres
def test_the_api_compacts_in_the_background(ledger):
    now = dt.datetime.now(dt.UTC)  # the task compacts as of the clock
    add_session(ledger, "s", now - 3 * DAY, None)
    rows = series("s", ["0"], now - 3 * DAY, now - 2 * DAY, counter=True, seed=3)
    add_samples(ledger, rows)
    facility = SimpleNamespace(ledger=ledger, settings=load_settings())

    async def a_moment_of_housekeeping() -> None:
        task = asyncio.create_task(housekeeping.run_forever(facility, 0, 3600))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if counts(ledger)["s"] < 8640:
                break
        task.cancel()

    asyncio.run(a_moment_of_housekeeping())
    assert counts(ledger) == expected_rows(rows, facility.settings.ledger, now, set())


@pytest.mark.postgres
def test_revision_0004_applies_and_reverts(ledger_url):
    migrate(ledger_url, "0003")
    migrate(ledger_url)
    new = {"gpu_peak_memory_mib", "gpu_energy_wh", "gpu_summary_at", "samples_compacted_until"}
    ledger = Ledger(ledger_url)
    assert new <= {c["name"] for c in inspect(ledger.engine).get_columns("sessions")}
    ledger.dispose()
    command.downgrade(alembic_config(ledger_url), "0003")
    ledger = Ledger(ledger_url)
    assert not new & {c["name"] for c in inspect(ledger.engine).get_columns("sessions")}
    ledger.dispose()
    migrate(ledger_url)


# --- settings ---------------------------------------------------------------------------


def test_sample_settings_default_and_take_durations():
    assert LedgerSettings().model_dump() == {
        "url": None, "password_file": None, "samples_full_resolution_for": 86400,
        "samples_bucket": 300, "samples_keep_for": 400 * 86400,
    }  # fmt: skip
    s = LedgerSettings(samples_full_resolution_for="2d", samples_bucket="15m",
                       samples_keep_for="90d")  # fmt: skip
    assert (s.samples_full_resolution_for, s.samples_bucket, s.samples_keep_for) == (
        172800, 900, 90 * 86400)  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"samples_bucket": 0}, "ledger.samples_bucket: a duration must be positive"),
        ({"samples_bucket": "30s"}, "ledger: samples_bucket must be 1 min to 1 d (got 30 s)"),
        ({"samples_bucket": "2d", "samples_full_resolution_for": "3d"}, "1 min to 1 d (got 2 d)"),
        ({"samples_full_resolution_for": "30m"}, "must be at least 1 h (got 30 min)"),
        ({"samples_bucket": "2h", "samples_full_resolution_for": "1h"},
         "samples_bucket (2 h) must not be longer than samples_full_resolution_for (1 h)"),
        ({"samples_keep_for": "12h"}, "samples_keep_for must be at least 1 d (got 12 h)"),
        ({"samples_keep_for": "2d", "samples_full_resolution_for": "3d"},
         "samples_keep_for (2 d) must not be shorter than samples_full_resolution_for (3 d)"),
        ({"samples_bucket": "5x"}, "'5x' is not a duration"),
    ],
)  # fmt: skip
def test_bad_sample_settings_are_refused_with_the_reason(overrides, message):
    with pytest.raises(SettingsError) as caught:
        load_settings().with_overrides(ledger=overrides)
    assert message in str(caught.value)
