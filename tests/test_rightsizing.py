"""The right-sizing hint from measured use, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import GpuSample, SessionEvent, SessionRecord
from gpuaf.rightsizing import capacity_mib, hint_for
from gpuaf.settings import EXAMPLE, Settings
from gpuaf.units import format_mib

T0 = dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate(yaml.safe_load(EXAMPLE.read_text()))


def add_sessions(ledger, user, profile, share, peaks, utils, state="stopped"):
    with ledger.session() as db:
        for i, (peak, util) in enumerate(zip(peaks, utils, strict=True)):
            sid = f"{user}-{profile}-{i}"
            start = T0 + dt.timedelta(hours=2 * i)
            db.add(SessionRecord(
                id=sid, user_name=user, profile=profile, backend="local", gpu_share=share,
                state=state, created_at=start, updated_at=start + dt.timedelta(hours=1),
                events=[SessionEvent(state="running", at=start),
                        SessionEvent(state=state, at=start + dt.timedelta(hours=1))],
            ))  # fmt: skip
            db.flush()
            for k in range(3):
                db.add(GpuSample(
                    session_id=sid, at=start + dt.timedelta(minutes=20 * k), device="0",
                    memory_used_mib=peak if k == 1 else peak // 2, memory_total_mib=81559,
                    utilisation_pct=util, power_w=100.0, energy_j=None,
                ))  # fmt: skip
        db.commit()


def test_a_small_use_of_a_whole_gpu_suggests_a_mig_slice(ledger_url, settings):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    # oldest first: a 60 GB session long ago, then five small ones
    add_sessions(ledger, "alice", "gpu-1", 1.0, [60000, 3000, 2500, 1200, 3072, 800],
                 [90, 8, 8, 8, 8, 8])  # fmt: skip
    allowed = settings.profiles_for(["higgs"])
    by_name = {p.name: p for p in settings.profiles}
    with ledger.session() as db:
        hint = hint_for(db, "alice", allowed, by_name)
    # the last 5 (newest first) leave out the oldest, a 60 GB session
    assert (hint.sessions == 5 and hint.peak_memory_mib == 60000) or hint.peak_memory_mib == 3072
    assert hint.peak_memory_mib == 3072
    assert hint.utilisation_pct == pytest.approx(8)
    assert hint.suggested.name == "mig-1g.18gb"
    text = hint.text()
    assert text.startswith(
        f"Your last 5 GPU sessions peaked at {format_mib(3072)} of GPU memory and 8 % utilisation: "
        f"the slice {hint.suggested.display_name} ({format_mib(capacity_mib(hint.suggested))}) "
        "would have served, at 1/7 of a GPU instead of the"
    )
    ledger.dispose()


def test_a_use_that_needs_the_slice_gets_no_smaller_suggestion(ledger_url, settings):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    add_sessions(ledger, "carol", "gpu-1", 1.0, [60000, 61000], [85, 95])
    allowed = settings.profiles_for(["higgs"])
    by_name = {p.name: p for p in settings.profiles}
    with ledger.session() as db:
        hint = hint_for(db, "carol", allowed, by_name)
        assert hint_for(db, "nobody", allowed, by_name) is None  # nothing measured: no hint
    assert hint.suggested is None
    assert hint.text().endswith("utilisation: the slices you booked fit that use.")
    ledger.dispose()
