"""Dask on slices without a batch system: what workers carry, the job scripts the clusters
write (HTCondor's parsed by htcondor2.Submit and matched with classad2 against the
reference slot ads), the size limit, and how the portal follows worker jobs.

The real SLURMCluster on shard GRES is in test_e2e_slurm.py; the LocalCluster through the
portal in test_e2e_jobs.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import htcondor2
import pytest
from support.fake_htcondor import ALL, load_slot_ads

from gpuaf.api.dask_follow import _apply, _settle, worker_view
from gpuaf.api.dask_service import ClusterError, check_request
from gpuaf.dask import make_cluster, prologue
from gpuaf.dask_workers import WorkerPlan, worker_request
from gpuaf.ledger.models import NotebookJob
from gpuaf.settings import Settings
from gpuaf.spawners.backends.base import JobState, JobStatus
from gpuaf.spawners.backends.htcondor_match import fits, job_ad

SLOTS = load_slot_ads()
ID = "fit-20261122-010101-abcd"
IAM = {"issuer": "https://iam.example.org/", "client_id": "gpuaf"}


def settings(**backend) -> Settings:
    return Settings.model_validate({"iam": IAM, "groups": {"higgs": {}}, "backend": backend})


def plan(profile_name: str) -> WorkerPlan:
    profile = next(p for p in ALL if p.name == profile_name)
    return WorkerPlan(ID, "alice", profile, "higgs", Path("/data/homes/alice/gpuaf-jobs") / ID)


def booked(backend: str, request: dict, workers: int = 0) -> dict:
    return {"id": ID, "backend": backend, "workers": workers, "worker": request, "url": "/x"}


def condor_script(profile_name: str, image: str | None = None) -> htcondor2.Submit:
    s = settings(kind="htcondor")
    if image:
        s = s.model_copy(update={"sessions": s.sessions.model_copy(update={"image": image})})
    cluster = make_cluster(booked("htcondor", worker_request(plan(profile_name), s, "htcondor")))
    try:
        text = cluster.job_script()
    finally:
        cluster.close()
    return htcondor2.Submit(text.split("\n", 1)[1].replace("\nQueue\n", "\n"))


# -- what workers carry ---------------------------------------------------------------
def test_slurm_workers_carry_the_slices_sbatch_options():
    s = settings(kind="slurm", slurm={"partition": "gpu", "account_from_group": True})
    req = worker_request(plan("mps-25"), s, "slurm")
    assert req["directives"] == [
        f"--job-name={ID}",
        f"--comment=gpuaf:profile=mps-25,user=alice,cluster={ID}",
        f"--output=/data/homes/alice/gpuaf-jobs/{ID}/%j.out",
        "--nodes=1", "--ntasks=1", "--cpus-per-task=1", "--mem=4096M", "--time=0-08:00:00",
        "--gres=shard:1", "--partition=gpu", "--account=higgs",
        f"--chdir=/data/homes/alice/gpuaf-jobs/{ID}",
    ]  # fmt: skip
    assert req["environment"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    mig = worker_request(plan("h200-1g.18gb"), s, "slurm")
    assert "--gres=gpu:1g.18gb:1" in mig["directives"]


def test_the_slurm_job_script_is_the_portals_directives_only():
    s = settings(kind="slurm")
    req = worker_request(plan("h100-x2"), s, "slurm")
    cluster = make_cluster(booked("slurm", req))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    directives = [
        line[len("#SBATCH ") :] for line in script.splitlines() if line.startswith("#SBATCH")
    ]
    assert directives == req["directives"]  # dask-jobqueue's own -J/-n/--mem/-t are gone
    assert "--gres=gpu:2" in directives and "--death-timeout 120" in script


def test_the_htcondor_job_script_parses_and_matches_only_its_slice():
    sub = condor_script("h200-1g.18gb")
    assert sub["request_gpus"] == "1" and sub["MY.GpuafCluster"] == f'"{ID}"'
    assert sub["accounting_group"] == "group_higgs" and sub["accounting_group_user"] == "alice"
    assert sub["MY.GpuafPortal"] == '"gpuaf"' and sub["batch_name"] == ID
    keys = set(sub.keys())
    assert "MY.DaskWorkerCores" in keys and "RequestCpus" not in keys  # the slice's instead
    job = job_ad(dict(sub.items()))
    matched = {k for k, slot in SLOTS.items() if job.symmetricMatch(slot)}
    assert matched == {"c"}  # the H200 cut into MIG instances, as a session on it
    assert fits(job, SLOTS["c"]) == 2  # its two free 1g.18gb instances


def test_htcondor_mps_workers_ask_for_an_mps_share_and_carry_the_pipe():
    sub = condor_script("mps-25")
    job = job_ad(dict(sub.items()))
    assert {k for k, slot in SLOTS.items() if job.symmetricMatch(slot)} == {"d"}
    assert "CUDA_MPS_PIPE_DIRECTORY=/tmp/nvidia-mps" in sub["Arguments"]


def test_htcondor_workers_run_in_the_sessions_image():
    sub = condor_script("cpu-small", image="ghcr.io/collab/analysis:2.1")
    assert sub["universe"] == "container"
    assert sub["container_image"] == "docker://ghcr.io/collab/analysis:2.1"


def test_the_session_token_and_portal_go_to_the_workers_quoted():
    env = {"BEARER_TOKEN_FILE": "/run/user/1000/bt u1000", "GPUAF_PORTAL_URL": "http://p/"}
    lines = prologue({"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25"}, env)
    assert lines == [
        "export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25",
        "export BEARER_TOKEN_FILE='/run/user/1000/bt u1000'",
        "export GPUAF_PORTAL_URL=http://p/",
    ]


# -- limits ---------------------------------------------------------------------------
def test_a_cluster_cannot_grow_beyond_what_it_booked():
    req = worker_request(plan("mps-25"), settings(kind="slurm"), "slurm")
    cluster = make_cluster(booked("slurm", req, workers=2))
    try:
        cluster.scale(0)
        with pytest.raises(ValueError, match="booked 2 worker"):
            cluster.scale(3)
        with pytest.raises(ValueError, match="booked 2 worker"):
            cluster.scale(jobs=5)
        with pytest.raises(ValueError, match="booked 2 worker"):
            cluster.adapt(minimum=0, maximum=3)
        adaptive = cluster.adapt(minimum=0)  # up to the booked number
        assert adaptive.maximum == 2
        adaptive.stop()
    finally:
        cluster.close()


def test_the_slice_decides_sizes():
    req = worker_request(plan("mps-25"), settings(kind="slurm"), "slurm")
    with pytest.raises(ValueError, match="cores, memory: the slice decides"):
        make_cluster(booked("slurm", req), cores=8, memory="1 TiB")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({"slice": "mps-25", "workers": 2, "gpus": 4}, "Unknown field(s) gpus; allowed: slice"),
        ({"workers": 2}, "slice must be the name"),
        ({"slice": "mps-25", "workers": 0}, "workers must be a whole number from 1 to 16"),
        ({"slice": "mps-25", "workers": 17}, "from 1 to 16"),
        ({"slice": "mps-25", "workers": True}, "from 1 to 16"),
        ({"slice": "mps-25", "workers": "2"}, "from 1 to 16"),
        ({"slice": "mps-25", "workers": 2, "walltime": [1]}, "walltime must be a duration"),
        ({"slice": "mps-25", "workers": 2, "name": 7}, "name must be text"),
    ],
)
def test_bad_requests_say_what_is_allowed(body, message):
    with pytest.raises(ClusterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_request(body, max_workers=16)


# -- following workers ----------------------------------------------------------------
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def cluster_row(workers: int = 2, walltime_s: int = 3600) -> NotebookJob:
    return NotebookJob(
        id=ID, kind="dask", workers=workers, user_name="alice", walltime_s=walltime_s,
        state="queued", reason="", created_at=NOW, items=[],
    )  # fmt: skip


def status(job_id: str, state: JobState, **kw) -> JobStatus:
    return JobStatus(job_id, state, **kw)


def test_workers_become_items_in_the_order_they_were_submitted():
    job = cluster_row()
    found = {"10": status("10", JobState.PENDING), "9": status("9", JobState.RUNNING, host="n1")}
    assert _apply(job, found, NOW) == []
    assert [(i.index, i.batch_id, i.state) for i in job.items] == [
        (0, "9", "running"),
        (1, "10", "queued"),
    ]
    assert job.items[0].started_at == NOW and job.items[0].host == "n1"
    _settle(job, NOW)
    assert (job.state, job.reason) == ("running", "1 worker(s) running, 1 waiting")


def test_workers_over_the_booked_number_are_named_for_removal_newest_first():
    job = cluster_row(workers=2)
    found = {str(n): status(str(n), JobState.RUNNING) for n in (5, 6, 7, 8)}
    assert _apply(job, found, NOW) == ["7", "8"]


def test_a_worker_removed_by_its_cluster_ended_normally_and_keeps_its_times():
    job = cluster_row()
    _apply(job, {"5": status("5", JobState.RUNNING)}, NOW)
    later = NOW + dt.timedelta(minutes=10)
    _apply(job, {"5": status("5", JobState.CANCELLED)}, later)
    item = job.items[0]
    assert (item.state, item.reason) == ("succeeded", "Removed by its cluster.")
    assert (item.started_at, item.finished_at) == (NOW, later)
    # a final item never changes again
    _apply(job, {"5": status("5", JobState.FAILED, reason="x")}, later)
    assert item.state == "succeeded"


@pytest.mark.parametrize(
    ("state", "started", "expected"),
    [
        (JobState.PENDING, False, "queued"),
        (JobState.HELD, False, "held"),
        (JobState.RUNNING, False, "running"),
        (JobState.DONE, True, "succeeded"),
        (JobState.FAILED, True, "failed"),
        (JobState.CANCELLED, True, "succeeded"),
        (JobState.UNKNOWN, True, "succeeded"),
        (JobState.UNKNOWN, False, "cancelled"),
    ],
)
def test_worker_states(state, started, expected):
    assert worker_view(status("1", state), started).state == expected


def test_an_abandoned_cluster_ends_after_its_walltime_once_no_worker_is_left():
    job = cluster_row(walltime_s=600)
    _apply(job, {"5": status("5", JobState.RUNNING)}, NOW)
    _apply(job, {"5": status("5", JobState.DONE)}, NOW + dt.timedelta(minutes=2))
    _settle(job, NOW + dt.timedelta(minutes=5))
    assert job.state != "succeeded"  # its walltime is not over: the notebook may scale up
    _settle(job, NOW + dt.timedelta(minutes=11))
    assert job.state == "succeeded" and job.reason.endswith("1 worker(s) ran.")
    assert job.finished_at == NOW + dt.timedelta(minutes=11)
