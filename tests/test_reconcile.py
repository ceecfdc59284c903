"""Reconciliation of the ledger with the batch system: idempotent, restart-proof."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

import psutil
import pytest
from sqlalchemy import select

from gpuaf.gpus import parse_simulation
from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import SessionEvent, SessionRecord
from gpuaf.ledger.sessions import open_session, set_state
from gpuaf.profiles import SliceProfile
from gpuaf.reconcile import Memory, reconcile
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
    _wait_dead(pid)  # a loaded machine may take a moment to end it
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


async def test_a_final_state_is_kept_whoever_reports_the_end_later(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    sid = open_session(ledger, user="bob", server="", profile="cpu", backend="local")
    set_state(ledger, sid, "failed", "the batch system held the job", job_id="local-x")
    set_state(ledger, sid, "stopping", "stop asked")
    set_state(ledger, sid, "stopped", "stopped")
    with ledger.session() as db:
        record = db.get(SessionRecord, sid)
        assert (record.state, record.reason) == ("failed", "the batch system held the job")
    assert _history(ledger, sid) == ["requested", "failed"]
    ledger.dispose()


async def test_a_stopping_session_is_not_moved_back_while_its_job_ends(ledger_url, tmp_path):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    backend = LocalBackend(tmp_path / "jobs", inventory=parse_simulation("1xH100-80GB"))
    sid = open_session(ledger, user="bob", server="", profile="cpu", backend="local")
    job = await backend.submit(_spec(tmp_path))
    set_state(ledger, sid, "running", job_id=job)
    set_state(ledger, sid, "stopping", "released: nobody connected within 20 min")
    assert (await reconcile(ledger, backend, {})).changed == {}
    await backend.cancel(job)
    # the spawner that is stopping it says how it ended: the reconciler leaves it alone...
    assert (await reconcile(ledger, backend, {})).changed == {}
    set_state(ledger, sid, "stopped", "released: nobody connected within 20 min")
    with ledger.session() as db:
        assert db.get(SessionRecord, sid).reason.startswith("released")
    # ...unless the stop got stuck (e.g. the hub died while stopping it)
    other = open_session(ledger, user="bob", server="x", profile="cpu", backend="local")
    set_state(ledger, other, "stopping", "stop asked", job_id="local-gone")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
    assert (await reconcile(ledger, backend, {}, now=later)).changed == {other: "lost"}
    ledger.dispose()


async def test_an_orphan_job_is_removed_once_the_hub_has_not_known_it_for_a_while(
    ledger_url, tmp_path
):
    """A hub killed between submitting a job and recording it: the job must not hold a slice."""
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    backend = LocalBackend(tmp_path / "jobs", inventory=parse_simulation("1xH100-80GB"))
    sids, jobs = {}, {}
    for name in ("orphan", "known", "running-orphan"):
        sids[name] = open_session(ledger, user="carol", server=name, profile="cpu", backend="local")
        jobs[name] = await backend.submit(_spec(tmp_path))
        set_state(ledger, sids[name], "queued", job_id=jobs[name])
    set_state(ledger, sids["running-orphan"], "running", "server up")
    memory = Memory()
    t0 = dt.datetime.now(dt.UTC)
    servers = {("carol", "known"): True}
    after = dt.timedelta(seconds=20)

    async def round_at(seconds, hub=servers):
        return await reconcile(
            ledger, backend, hub, memory=memory, orphan_after=after,
            now=t0 + dt.timedelta(seconds=seconds),
        )  # fmt: skip

    first = await round_at(0)
    assert first.released == [] and set(memory.absent_since) == {
        sids["orphan"],
        sids["running-orphan"],
    }
    assert (await round_at(10, hub=None)).released == []  # the hub did not answer: no verdict
    assert memory.absent_since == {}  # and the count starts again
    assert (await round_at(15)).released == []
    done = await round_at(36)
    assert sorted(done.released) == sorted([jobs["orphan"], jobs["running-orphan"]])
    assert done.changed == {sids["orphan"]: "failed", sids["running-orphan"]: "stopped"}
    statuses = await backend.status(list(jobs.values()))
    assert statuses[jobs["orphan"]].state.final and statuses[jobs["running-orphan"]].state.final
    assert not statuses[jobs["known"]].state.final
    with ledger.session() as db:
        assert "Start the session again" in db.get(SessionRecord, sids["orphan"]).reason
    assert (await round_at(60)).released == []  # idempotent
    assert memory.absent_since == {}
    await backend.cancel(jobs["known"])
    ledger.dispose()


def _wait_dead(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
