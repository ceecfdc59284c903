"""The HTCondor backend against FakeSchedd/FakeCollector: status, cancel, availability,
hold reasons; and the doubles against the real htcondor2 surface."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import htcondor2
import pytest
from support.fake_htcondor import (
    ALL,
    CATALOGUE,
    FakeCollector,
    FakeSchedd,
    fake_factories,
    iter_doubles,
    load_slot_ads,
)

from gpuaf.errors import BackendError
from gpuaf.settings import load_settings
from gpuaf.spawners.backends import make_backend
from gpuaf.spawners.backends.base import JobSpec, JobState
from gpuaf.spawners.backends.htcondor import HTCondorBackend
from gpuaf.spawners.backends.htcondor_holds import clean, explain_hold

BY_NAME = {p.name: p for p in ALL}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool(tmp_path: Path):
    schedd, collector, clock = FakeSchedd(), FakeCollector(list(load_slot_ads().values())), Clock()
    backend = HTCondorBackend(
        **fake_factories(schedd, collector), spool_dir=tmp_path / "spool", clock=clock
    )
    return backend, schedd, collector, clock


def spec(name: str, user: str = "alice", session: str = "s1") -> JobSpec:
    profile = BY_NAME[name]
    tags = {"portal": "gpuaf", "user": user, "session": session, "profile": name}
    return JobSpec(
        name=f"gpuaf-{session}", user=user, profile=profile, command=("sleep", "60"), tags=tags
    )


def test_the_doubles_have_the_htcondor2_surface():
    for double, real in iter_doubles():
        for name, method in inspect.getmembers(double, inspect.isfunction):
            if name.startswith(("_", "fake_")):
                continue
            assert hasattr(real, name), f"{real.__name__}.{name} does not exist"
            fake = list(inspect.signature(method).parameters)
            assert fake == list(inspect.signature(getattr(real, name)).parameters), name


async def test_submit_tags_the_job_and_queues_by_profile(pool):
    backend, schedd, *_ = pool
    first = await backend.submit(spec("h100-x1", session="s1"))
    second = await backend.submit(spec("h100-x1", user="bob", session="s2"))
    other = await backend.submit(spec("h200-1g.18gb", session="s3"))
    assert (first, second, other) == ("100.0", "101.0", "102.0")
    ad = schedd.jobs["101.0"]
    assert (ad["GpuafPortal"], ad["GpuafUser"], ad["GpuafSession"]) == ("gpuaf", "bob", "s2")
    assert ad["GpuafProfile"] == "h100-x1"
    schedd.calls.clear()
    table = await backend.status([first, second, other])
    assert schedd.fake_calls("query") == 1 and schedd.fake_calls("history") == 0
    assert [table[j].state for j in (first, second, other)] == [JobState.PENDING] * 3
    assert [table[j].queue_position for j in (first, second, other)] == [1, 2, 1]
    query = schedd.calls[0][1]
    assert query["constraint"] == 'GpuafPortal == "gpuaf"'
    assert {"ClusterId", "JobStatus", "HoldReasonCode", "AssignedGPUs"} <= set(query["projection"])


async def test_running_job_reports_host_gpus_and_usage(pool):
    backend, schedd, *_ = pool
    first = await backend.submit(spec("h100-x1", session="s1"))
    second = await backend.submit(spec("h100-x1", session="s2"))
    schedd.fake_set(
        first, JobStatus=2, RemoteHost="slot1_1@gpu-h100-01.example.org",
        AssignedGPUs="GPU-eb0a5d60,GPU-c5ba6d5e", GPUsUsage=0.42, GPUsMemoryUsage=2048.0,
    )  # fmt: skip
    table = await backend.status([first, second])
    running = table[first]
    assert running.state == JobState.RUNNING and running.host == "gpu-h100-01.example.org"
    assert running.gpus == ("GPU-eb0a5d60", "GPU-c5ba6d5e")
    assert (running.gpu_utilisation, running.gpu_memory_mib) == (0.42, 2048.0)
    assert table[second].queue_position == 1


async def test_finished_jobs_come_from_one_history_query(pool, tmp_path):
    backend, schedd, *_ = pool
    ok, bad, killed = [await backend.submit(spec("cpu-small", session=f"s{i}")) for i in range(3)]
    err = Path(schedd.submitted[1]["initialdir"]) / "job.err"
    err.write_text("Traceback ...\nModuleNotFoundError: No module named 'torch'\n\n")
    schedd.fake_finish(ok, 4, ExitCode=0)
    schedd.fake_finish(bad, 4, ExitCode=1)
    schedd.fake_finish(killed, 4, ExitBySignal=True, ExitSignal=9)
    schedd.calls.clear()
    table = await backend.status([ok, bad, killed])
    assert schedd.fake_calls("query") == 1 and schedd.fake_calls("history") == 1
    assert table[ok].state == JobState.DONE and table[ok].exit_code == 0
    assert table[bad].state == JobState.FAILED and table[bad].exit_code == 1
    assert "No module named 'torch'" in table[bad].reason
    assert table[killed].state == JobState.FAILED and "signal 9" in table[killed].reason


async def test_unknown_and_foreign_ids(pool):
    backend, schedd, *_ = pool
    job = await backend.submit(spec("cpu-small"))
    schedd.fake_forget(job)
    table = await backend.status([job, "local-abc", "1.2.3"])
    assert table[job].state == JobState.UNKNOWN and "no longer knows" in table[job].reason
    assert table["local-abc"].state == table["1.2.3"].state == JobState.UNKNOWN


async def test_held_job_says_why_in_plain_words(pool):
    backend, schedd, *_ = pool
    job = await backend.submit(spec("h100-x1"))
    reason = "Job has gone over cgroup memory limit of 32768 megabytes.\nPeak usage: 40000 MB"
    schedd.fake_set(job, JobStatus=5, HoldReasonCode=34, HoldReasonSubCode=0, HoldReason=reason)
    status = (await backend.status([job]))[job]
    assert status.state == JobState.HELD
    assert status.reason.startswith("The job used more memory than its slice provides")
    assert "\n" not in status.reason and "32768 megabytes" in status.reason


async def test_cancel_removes_and_a_gone_job_is_fine(pool):
    backend, schedd, *_ = pool
    job = await backend.submit(spec("h100-x1"))
    await backend.cancel(job)
    call = next(kw for name, kw in schedd.calls if name == "act")
    assert call["action"] == htcondor2.JobAction.Remove and call["job_spec"] == [job]
    assert (await backend.status([job]))[job].state == JobState.CANCELLED
    await backend.cancel(job)  # gone already: fine
    schedd.fail_with = htcondor2.HTCondorException("no such job")
    with pytest.raises(BackendError):  # cannot even look: the removal is not confirmed
        await backend.cancel(job)
    await backend.cancel("not-a-condor-id")


async def test_cancel_of_a_running_job_that_cannot_be_removed_is_an_error(pool, monkeypatch):
    backend, schedd, *_ = pool
    job = await backend.submit(spec("h100-x1"))
    schedd.fake_set(job, JobStatus=2)

    def refuse(*args, **kw):
        raise htcondor2.HTCondorException("permission denied")

    monkeypatch.setattr(schedd, "act", refuse)
    with pytest.raises(BackendError, match="does not answer"):
        await backend.cancel(job)


async def test_a_schedd_that_does_not_answer_is_a_clear_error(pool):
    backend, schedd, *_ = pool
    schedd.fail_with = htcondor2.HTCondorException("Failed to connect to schedd")
    with pytest.raises(BackendError, match="does not answer"):
        await backend.status(["100.0"])


async def test_availability_from_slot_ads_and_the_queue(pool):
    backend, schedd, collector, _ = pool
    for i in range(3):
        await backend.submit(spec("h100-x1", session=f"s{i}"))
    schedd.fake_set("100.0", JobStatus=2)
    profiles = [BY_NAME[n] for n in ("h100-x1", "h200-1g.18gb", "mps-25", "a100-40-x1")]
    table = await backend.availability(profiles)
    h100 = table["h100-x1"]
    assert (h100.capacity, h100.free, h100.busy, h100.waiting) == (4, 4, 1, 2)
    assert h100.eta_s is None and h100.note == "1 node of the pool offers this slice."
    assert (table["h200-1g.18gb"].capacity, table["mps-25"].free) == (2, 8)
    assert table["a100-40-x1"].capacity == 0
    assert "No node" in table["a100-40-x1"].note
    assert collector.queries[0]["ad_type"] == htcondor2.AdType.Startd


async def test_a_hundred_open_forms_cost_one_collector_query(pool):
    backend, schedd, collector, clock = pool
    results = await asyncio.gather(*(backend.availability(CATALOGUE) for _ in range(100)))
    assert len(collector.queries) == 1 and schedd.fake_calls("query") == 1
    assert all(r == results[0] for r in results)
    clock.now += backend.availability_ttl - 1
    await backend.availability(ALL)
    assert len(collector.queries) == 1
    clock.now += 2
    await backend.availability(CATALOGUE)
    assert len(collector.queries) == 2


async def test_availability_when_the_collector_does_not_answer(pool):
    backend, _, collector, clock = pool
    collector.fail_with = htcondor2.HTCondorException("Unable to determine collector host.")
    table = await backend.availability(CATALOGUE)
    assert all(a.capacity == 0 for a in table.values())
    assert "does not answer" in table["gpu-1"].note
    collector.fail_with = None
    clock.now += 60
    assert (await backend.availability(CATALOGUE))["gpu-1"].capacity == 4
    collector.fail_with = htcondor2.HTCondorException("timeout")
    clock.now += 60
    stale = (await backend.availability(CATALOGUE))["gpu-1"]
    assert stale.capacity == 4 and "60 s ago" in stale.note


async def test_from_settings_builds_without_a_pool_and_fails_clearly(tmp_path):
    settings = load_settings().with_overrides(
        portal={"data_dir": str(tmp_path)},
        backend={"kind": "htcondor", "htcondor": {"availability_ttl": "30s"}},
    )
    backend = make_backend(settings)
    assert isinstance(backend, HTCondorBackend) and backend.reports_port
    assert backend.spool_dir == settings.data_dir / "htcondor-spool"
    assert backend.availability_ttl == 30 and backend.config.accounting_group_prefix == "group_"
    with pytest.raises(BackendError):  # no HTCondor daemons here: a clear error, no hang
        await backend.status(["1.0"])


@pytest.mark.parametrize(
    ("code", "sub", "reason", "expected"),
    [
        (34, 0, "Job has gone over cgroup memory limit of 8192 megabytes.", "more memory"),
        (34, 0, "Job used more disk than requested", "scratch disk"),
        (12, 2, "Transfer output files failure at execution point", "copied back"),
        (13, 2, "Transfer input files failure: gpuaf-secrets.json", "input files"),
        (6, 2, "Failed to execute '/usr/bin/env': No such file or directory", "missing"),
        (1, 0, "via condor_hold (by user alice)", "put on hold by an administrator or by you"),
        (26, 0, "The system macro SYSTEM_PERIODIC_HOLD expression evaluated to true", "policy"),
        (26, 0, "Job exceeded allowed execute duration", "time limit"),
        (47, 0, "The job exceeded allowed execute duration of 8:00:00", "time limit"),
        (46, 0, "The job exceeded allowed job duration", "longer than its slice"),
        (35, 0, "Cannot pull image", "container image"),
        (0, 1021, "Error running container", "container could not be started"),
        (99, 0, "Some new reason\nwith\x07controls", "put the job on hold: Some new reason"),
        (None, None, "", "without saying why"),
    ],
)
def test_hold_reasons(code, sub, reason, expected):
    text = explain_hold(code, sub, reason)
    assert expected in text
    assert "\n" not in text and "\x07" not in text


def test_hold_reasons_are_shortened():
    text = explain_hold(99, 0, "x" * 5000)
    assert len(text) < 300 and text.endswith("…")
    assert clean("a\n\n b\tc") == "a b c"


async def test_a_history_that_cannot_be_read_leaves_the_job_unknown(pool, monkeypatch):
    backend, schedd, *_ = pool
    job = await backend.submit(spec("cpu-small"))
    schedd.fake_finish(job, 4, ExitCode=0)

    def broken(*args, **kw):
        raise htcondor2.HTCondorException("history file unreadable")

    monkeypatch.setattr(schedd, "history", broken)
    assert (await backend.status([job]))[job].state == JobState.UNKNOWN


async def test_odd_ids_never_touch_files(pool, tmp_path):
    backend, *_ = pool
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (backend.spool_dir / "jobs").mkdir(parents=True)
    odd = f"../../{victim.name}"
    table = await backend.status([odd])
    await backend.cancel(odd)
    assert table[odd].state == JobState.UNKNOWN and victim.read_text() == "keep me"


async def test_a_profile_htcondor_cannot_express_is_reported_not_raised(pool):
    backend, *_ = pool
    bad = BY_NAME["h100-x1"].model_copy(update={"name": 'x" || true'})
    table = await backend.availability([bad, BY_NAME["h100-x1"]])
    assert table['x" || true'].capacity == 0 and "may only hold" in table['x" || true'].note
    assert table["h100-x1"].capacity == 4
