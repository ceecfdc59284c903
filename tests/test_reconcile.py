"""Reconciliation of the ledger with the batch system: idempotent, restart-proof."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import pytest
from sqlalchemy import select

from gpuaf.gpus import parse_simulation
from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import SessionEvent, SessionRecord
from gpuaf.ledger.sessions import open_session, set_state
from gpuaf.profiles import SliceProfile
from gpuaf.reconcile import reconcile
from gpuaf.spawners.backends.base import JobSpec
from gpuaf.spawners.backends.local import LocalBackend

CPU = SliceProfile(name="cpu", display_name="CPU", kind="cpu")
SLEEP = (sys.executable, "-c", "import time; time.sleep(60)")


def _spec(tmp_path):
    return JobSpec(
        name="t",
        user="alice",
        profile=CPU,
        command=SLEEP,
        env={"PATH": os.environ["PATH"]},
        workdir=tmp_path,
    )


def _history(ledger, sid):
    with ledger.session() as db:
        return [
            e.state
            for e in db.scalars(
                select(SessionEvent).where(SessionEvent.session_id == sid).order_by(SessionEvent.id)
            )
        ]


async def test_one_round_brings_every_session_to_the_truth(ledger_url, tmp_path):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    backend = LocalBackend(tmp_path / "jobs", inventory=parse_simulation("1xH100-80GB"))
    sids = {}
    for name in ("alive", "ready", "killed", "cancelled", "unknown", "fresh", "stale"):
        sids[name] = open_session(ledger, user="alice", server=name, profile="cpu", backend="local")
    jobs = {
        name: await backend.submit(_spec(tmp_path))
        for name in ("alive", "ready", "killed", "cancelled")
    }
    for name, job in jobs.items():
        set_state(ledger, sids[name], "queued", job_id=job)
    set_state(ledger, sids["unknown"], "starting", job_id="local-gone")
    pid = json.loads((tmp_path / "jobs" / f"{jobs['killed']}.json").read_text())["pid"]
    await backend.cancel(jobs["cancelled"])
    os.kill(pid, 9)
    later = backend.__class__(tmp_path / "jobs", inventory=backend.inventory)  # a restart
    with ledger.session() as db:  # a spawn whose hub died before submitting, long ago
        db.get(SessionRecord, sids["stale"]).created_at = dt.datetime.now(dt.UTC) - dt.timedelta(
            hours=1
        )
    servers = {("alice", "ready"): True, ("alice", "alive"): False}
    first = await reconcile(ledger, later, servers)
    states = {name: None for name in sids}
    with ledger.session() as db:
        for name, sid in sids.items():
            states[name] = db.get(SessionRecord, sid).state
    # killed with SIGKILL: "failed" if this process reaped it first, else "lost"
    assert states.pop("killed") in ("failed", "lost")
    assert states == {
        "alive": "starting",
        "ready": "running",
        "cancelled": "stopped",
        "unknown": "lost",
        "fresh": "requested",
        "stale": "failed",
    }
    with ledger.session() as db:
        assert "no record" in db.get(SessionRecord, sids["unknown"]).reason
    assert first.checked == 7 and len(first.changed) == 6
    second = await reconcile(ledger, later, servers)  # idempotent: nothing changes
    assert second.changed == {}
    assert _history(ledger, sids["ready"]) == ["requested", "queued", "running"]
    await later.cancel(jobs["alive"])
    await later.cancel(jobs["ready"])
    ledger.dispose()


async def test_sessions_of_another_backend_are_left_alone(ledger_url, tmp_path):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    sid = open_session(ledger, user="bob", server="", profile="cpu", backend="slurm")
    set_state(ledger, sid, "queued", job_id="123")
    result = await reconcile(
        ledger, LocalBackend(tmp_path / "jobs", inventory=parse_simulation("1xH100-80GB"))
    )
    assert result.checked == 0
    ledger.dispose()


@pytest.mark.parametrize("state", ["stopped", "failed", "lost"])
async def test_final_sessions_are_never_touched(ledger_url, tmp_path, state):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    sid = open_session(ledger, user="bob", server="", profile="cpu", backend="local")
    set_state(ledger, sid, state, job_id="local-x")
    result = await reconcile(
        ledger, LocalBackend(tmp_path / "jobs", inventory=parse_simulation("1xH100-80GB"))
    )
    assert result.checked == 0
    ledger.dispose()
