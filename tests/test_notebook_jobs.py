"""Notebook jobs below the portal: the HTCondor cluster of N items against the test double,
what an item's state is made of, the job's state, and the GPU-hours quota of jobs."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
import yaml
from support.fake_htcondor import FakeCollector, FakeSchedd, fake_factories
from support.notebooks import write_notebook, write_settings

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import NotebookJob, NotebookJobItem
from gpuaf.notebooks import htcondor as condor_nb
from gpuaf.notebooks.batch import HTCondorItems
from gpuaf.notebooks.follow import ItemView, item_view, job_view
from gpuaf.notebooks.plan import plan_job
from gpuaf.policy import QuotaExceeded, check_job, usage_of
from gpuaf.settings import EXAMPLE, Settings, load_settings
from gpuaf.spawners.backends.base import JobState, JobStatus
from gpuaf.spawners.backends.htcondor import HTCondorBackend


@pytest.fixture
def planned(tmp_path):
    settings = load_settings(write_settings(tmp_path / "settings.yaml"))
    home = tmp_path / "home" / "alice"
    write_notebook(home / "train.ipynb")
    plan = plan_job(
        settings, notebook="train.ipynb", home=home, user="alice", groups=["higgs"],
        slice_name="mig-1g", sweeps=["lr=0.01,0.1,1"],
    )  # fmt: skip
    plan.job_dir.mkdir(parents=True)
    return settings, plan


async def test_htcondor_items_are_one_cluster_as_the_dry_run_prints_it(planned, tmp_path):
    settings, plan = planned
    schedd = FakeSchedd()
    backend = HTCondorBackend(
        **fake_factories(schedd, FakeCollector()), spool_dir=tmp_path / "spool"
    )
    items = HTCondorItems(backend, settings)
    submitted = await items.submit(plan, {"BEARER_TOKEN": "eyJ.secret.x"})
    assert submitted.batch_id == "100"
    assert submitted.item_ids == ("100.0", "100.1", "100.2")
    assert schedd.calls[0] == ("submit", {"count": 3, "spool": False})
    # exactly what `gpuaf submit --dry-run` prints, queue 3 included
    assert str(schedd.submitted[0]) == condor_nb.submit_file(plan, settings, with_secrets=True)
    assert "eyJ" not in str(schedd.submitted[0])
    secrets = Path(submitted.secrets_file)
    assert secrets.parent == plan.job_dir and stat.S_IMODE(os.stat(secrets).st_mode) == 0o600
    assert [schedd.jobs[i]["ProcId"] for i in submitted.item_ids] == [0, 1, 2]

    schedd.fake_set("100.0", JobStatus=2, RemoteHost="slot1@wn01.example.org")
    schedd.fake_finish("100.1", 4, ExitCode=0)
    states = await items.status("100", submitted.item_ids)
    assert [states[i].state for i in submitted.item_ids] == [
        JobState.RUNNING, JobState.DONE, JobState.PENDING,
    ]  # fmt: skip
    await items.cancel("100", ["100.0", "100.2"])
    assert {k for k, ad in schedd.done.items() if ad["JobStatus"] == 3} == {"100.0", "100.2"}


RUNNING = {"state": "running", "host": "wn01", "started": "2026-11-21T10:00:00+00:00"}
DONE = {**RUNNING, "state": "succeeded", "exit": 0, "finished": "2026-11-21T10:05:00+00:00"}
FAILED = {**DONE, "state": "failed", "exit": 1, "error": "cell [2]: ValueError: lr"}


def batch(state, reason="", **kw):
    return JobStatus("1_0", state, reason=reason, **kw)


@pytest.mark.parametrize(
    ("status", "own", "cancelled", "expect"),
    [
        (batch(JobState.PENDING, "waiting for a free GPU", queue_position=2), None, False,
         ("queued", "waiting for a free GPU (position 2 in the queue)")),
        (batch(JobState.HELD, "The job is held by an administrator."), None, False,
         ("held", "The job is held by an administrator.")),
        (batch(JobState.RUNNING, host="wn01"), None, False, ("running", "")),
        (batch(JobState.RUNNING), RUNNING, False, ("running", "")),
        # the item's own word wins once it is final, whatever the batch system says
        (batch(JobState.UNKNOWN), DONE, False, ("succeeded", "")),
        (batch(JobState.DONE), FAILED, False, ("failed", "cell [2]: ValueError: lr")),
        (batch(JobState.FAILED, "The job reached its time limit."), RUNNING, False,
         ("failed", "The item stopped while its notebook ran: The job reached its time limit.")),
        (batch(JobState.DONE), None, False,
         ("failed", "The batch job ended without running the notebook; its log says why.")),
        (batch(JobState.CANCELLED, "The job was cancelled by an administrator or the batch "
               "system."), None, False,
         ("cancelled", "The job was cancelled by an administrator or the batch system.")),
        (batch(JobState.UNKNOWN), None, True, ("cancelled", "Cancelled.")),
    ],
)  # fmt: skip
def test_an_items_state_from_the_batch_system_and_its_status_file(status, own, cancelled, expect):
    view = item_view(status, own, cancelled)
    assert (view.state, view.reason) == expect
    if own:
        assert view.host == "wn01" and view.started_at == dt.datetime(
            2026, 11, 21, 10, tzinfo=dt.UTC
        )


def test_the_jobs_state_from_its_items():
    q, r, s = (
        ItemView("queued", "waiting for a free GPU"),
        ItemView("running"),
        ItemView("succeeded"),
    )
    f = ItemView("failed", "cell [1]: NameError: x")
    assert job_view([q, q], False) == ("queued", "waiting for a free GPU")
    assert job_view([q, ItemView("held", "held by its owner")], False) == (
        "queued", "held: held by its owner",
    )  # fmt: skip
    assert job_view([r, s, q], False) == ("running", "1 running, 1 of 3 done")
    assert job_view([s, s, s], False) == ("succeeded", "All 3 item(s) ran.")
    assert job_view([s, f, s], False) == (
        "failed", "1 of 3 item(s) failed; the first: cell [1]: NameError: x",
    )  # fmt: skip
    assert job_view([s, ItemView("cancelled")], False) == (
        "cancelled", "Cancelled; 1 of 2 item(s) had finished.",
    )  # fmt: skip


class Member:
    def __init__(self, name, groups):
        self.name, self.groups = name, tuple(groups)


def test_job_items_count_against_the_monthly_gpu_hours(ledger_url):
    settings = Settings.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    bob = Member("bob", ["neutrino"])  # 50 GPU-hours a month
    gpu, cpu = settings.profile("gpu-1"), settings.profile("cpu")
    now = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
    check_job(settings, ledger, bob, gpu, now=now)
    start = now - dt.timedelta(hours=30)
    with ledger.session() as db:
        db.add(NotebookJob(
            id="scan-1", user_name="bob", idempotency_key="k", request_digest="d", name="scan",
            profile="gpu-1", backend="slurm", walltime_s=86400, gpu_share=1.0, output_dir="/x",
            state="running", items=[
                NotebookJobItem(index=0, started_at=start, finished_at=None, state="running"),
                NotebookJobItem(index=1, started_at=start, finished_at=now, state="succeeded"),
                NotebookJobItem(index=2, state="queued"),  # not started: no GPU time
            ],
        ))  # fmt: skip
        db.commit()
    assert usage_of(ledger, "bob", now=now).gpu_hours_this_month == pytest.approx(60)
    with pytest.raises(QuotaExceeded, match=r"50 GPU-hours this month is used up \(60.0 used\)"):
        check_job(settings, ledger, bob, gpu, now=now)
    check_job(settings, ledger, bob, cpu, now=now)  # CPU-only jobs remain possible
    # before the items ran, they had used nothing
    assert usage_of(ledger, "bob", now=now.replace(month=10)).gpu_hours_this_month == 0
    ledger.dispose()


def test_grid_sites_are_targets_on_htcondor_only(tmp_path):
    from types import SimpleNamespace

    from gpuaf.api.routes.jobs import targets

    settings = load_settings(write_settings(tmp_path / "settings.yaml"))
    condor = SimpleNamespace(settings=settings, backend=SimpleNamespace(name="htcondor"))
    names = [t.name for t in targets(None, condor)]
    assert sorted(names) == ["grid:ce-default-port", "grid:nordic", "grid:osg-ce", "local"]
    labels = {t.name: t.label for t in targets(None, condor)}
    assert labels["grid:nordic"] == "nordic (ARC CE arc.example.org)"
    assert names[0] == "local"
    slurm = SimpleNamespace(settings=settings, backend=SimpleNamespace(name="slurm"))
    assert [(t.name, t.label) for t in targets(None, slurm)] == [
        ("local", "the local queue (slurm)")
    ]
