"""Opt-in: the HTCondor backend on a real pool (set CONDOR_CONFIG on a submit machine).

Books one short sleep job per kind of slice (cpu, gpu, mig, mps) that the pool offers,
follows it through the schedd and removes it. Kinds the pool has no node for are
skipped with the reason. GPUAF_TEST_HTCONDOR_WAIT (s, default 180) bounds the wait for
a job to start; GPUAF_TEST_HTCONDOR_IMAGE runs the jobs in that container image.
"""

from __future__ import annotations

import asyncio
import os
import time

import htcondor2
import pytest
from support.fake_htcondor import ALL

from gpuaf.spawners.backends.base import JobSpec, JobState
from gpuaf.spawners.backends.htcondor import HTCondorBackend


def _no_pool() -> str | None:
    # importing htcondor2 without a configuration sets CONDOR_CONFIG=/dev/null itself
    if os.environ.get("CONDOR_CONFIG", "/dev/null") == "/dev/null":
        return "CONDOR_CONFIG is not set: no HTCondor pool to test against"
    try:
        htcondor2.reload_config()
        htcondor2.Schedd()
    except htcondor2.HTCondorException as exc:
        return f"no schedd answers ({exc})"
    return None


REASON = _no_pool()
pytestmark = [pytest.mark.htcondor_pool, pytest.mark.skipif(REASON is not None, reason=REASON)]
KINDS = {
    "cpu": ["cpu-small"],
    "gpu": ["any-x1", "h100-x1", "a100-80-x1", "a100-40-x1"],
    "mig": [p.name for p in ALL if p.kind == "mig"],
    "mps": ["mps-50", "mps-25"],
}


@pytest.fixture
def backend(tmp_path):
    return HTCondorBackend(
        schedd_factory=htcondor2.Schedd,
        collector_factory=htcondor2.Collector,
        spool_dir=tmp_path / "spool",
        image=os.environ.get("GPUAF_TEST_HTCONDOR_IMAGE"),
    )


@pytest.mark.parametrize("kind", list(KINDS))
async def test_book_follow_and_remove(backend, kind):
    by_name = {p.name: p for p in ALL}
    table = await backend.availability([by_name[n] for n in KINDS[kind]])
    offered = [n for n in KINDS[kind] if table[n].capacity > 0]
    if not offered:
        pytest.skip(f"the pool has no node for a {kind} slice")
    profile = by_name[offered[0]]
    spec = JobSpec(
        name="gpuaf-pooltest", user=os.environ.get("USER", "gpuaf"), profile=profile,
        command=("/bin/sleep", "120"), tags={"session": "pooltest", "profile": profile.name},
        image=backend.image, secrets={"GPUAF_TEST_SECRET": "pool-test-secret-value"},
    )  # fmt: skip
    job = await backend.submit(spec)
    try:
        deadline = time.monotonic() + float(os.environ.get("GPUAF_TEST_HTCONDOR_WAIT", "180"))
        status = (await backend.status([job]))[job]
        while status.state == JobState.PENDING and time.monotonic() < deadline:
            await asyncio.sleep(5)
            status = (await backend.status([job]))[job]
        assert status.state in (JobState.PENDING, JobState.RUNNING), status.reason
        if status.state == JobState.RUNNING:
            assert status.host
            assert bool(status.gpus) == (profile.kind != "cpu")
    finally:
        await backend.cancel(job)
    for _ in range(30):
        status = (await backend.status([job]))[job]
        if status.state.final:
            break
        await asyncio.sleep(2)
    assert status.state in (JobState.CANCELLED, JobState.UNKNOWN)


async def test_a_notebook_job_is_one_cluster_of_items(backend, tmp_path):
    """A 2-item notebook job on a cpu slice: one cluster, procs 0 and 1, followed, removed
    (the job folder must be readable by the pool's execute nodes for it to run)."""
    from support.notebooks import write_notebook, write_settings

    from gpuaf.notebooks.batch import HTCondorItems
    from gpuaf.notebooks.plan import plan_job
    from gpuaf.settings import load_settings

    settings = load_settings(write_settings(tmp_path / "settings.yaml"))
    home = tmp_path / "home"
    write_notebook(home / "nb.ipynb")
    plan = plan_job(
        settings, notebook=home / "nb.ipynb", home=home, user=os.environ.get("USER", "gpuaf"),
        groups=["higgs"], slice_name="cpu", sweeps=["lr=0.1,0.2"],
    )  # fmt: skip
    plan.job_dir.mkdir(parents=True)
    for name in ("manifest.json", "notebook.ipynb"):
        (plan.job_dir / name).write_text("{}")
    items = HTCondorItems(backend, settings)
    submitted = await items.submit(plan, {})
    try:
        cluster = submitted.batch_id
        assert submitted.item_ids == (f"{cluster}.0", f"{cluster}.1")
        states = await items.status(cluster, submitted.item_ids)
        assert all(s.state != JobState.UNKNOWN for s in states.values()), states
    finally:
        await items.cancel(submitted.batch_id, submitted.item_ids)


def test_a_dask_cluster_worker_on_the_pool_is_found_by_its_cluster_tag(backend, tmp_path):
    """One HTCondorCluster worker on a cpu slice, submitted by dask-jobqueue (condor_submit
    on PATH) with the portal's directives: the portal's one query finds it by its tag, and
    it computes (when the pool runs it in time and its workers reach this machine)."""
    from distributed import Client

    from gpuaf.dask import make_cluster
    from gpuaf.dask_workers import WorkerPlan, find_workers, worker_request
    from gpuaf.settings import Settings

    settings = Settings.model_validate({
        "iam": {"issuer": "https://iam.example.org/", "client_id": "gpuaf"},
        "groups": {"higgs": {}}, "backend": {"kind": "htcondor"},
    })  # fmt: skip
    profile = next(p for p in ALL if p.name == "cpu-small")
    cluster_id = f"pooltest-{int(time.time())}"
    plan = WorkerPlan(cluster_id, os.environ.get("USER", "gpuaf"), profile, None, tmp_path)
    request = worker_request(plan, settings, "htcondor")
    booked = {"id": cluster_id, "backend": "htcondor", "workers": 1, "worker": request}
    cluster = make_cluster(booked)
    try:
        found = {}
        for _ in range(30):
            found = asyncio.run(find_workers(backend, cluster_id, []))
            if found:
                break
            time.sleep(2)
        assert len(found) == 1, "the worker job was not found by MY.GpuafCluster"
        with Client(cluster) as dask:
            dask.wait_for_workers(1, float(os.environ.get("GPUAF_TEST_HTCONDOR_WAIT", "180")))
            assert dask.submit(sum, [1, 2]).result() == 3
    finally:
        cluster.close()
