"""The Slurm backend against a real Slurm (munge, slurmctld, slurmd) with fake GPUs.

Jobs here are real batch jobs: their command writes its environment to a file, and
the tests read what the job saw (CUDA_VISIBLE_DEVICES, shards, MPS variables, the
secrets file) and what it must not see (the hub's environment).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from support.slurm import LocalSlurm, start_slurm
from support.slurm_jobs import (
    CANARY,
    CPU,
    GPU1,
    GPU2,
    MIG,
    MPS25,
    MPS50,
    NASTY,
    NODE,
    SECRET,
    seen_by,
    spec,
    wait_for,
)

from gpuaf.errors import BackendError
from gpuaf.spawners.backends.base import JobSpec, JobState
from gpuaf.spawners.backends.slurm import SlurmBackend

pytestmark = pytest.mark.slurm


# -- fixtures (candidates for conftest.py) ----------------------------------
@pytest.fixture(scope="module", autouse=True)
def hub_canary() -> Iterator[str]:
    """A variable of the hub's (this process's) environment that no job may see."""
    os.environ[CANARY] = "hub-only"
    yield CANARY
    os.environ.pop(CANARY, None)


def make_backend(cluster: LocalSlurm, spool: Path, **kw) -> SlurmBackend:
    cluster.cancel_all()
    kw.setdefault("mps_gres", cluster.gres)
    kw.setdefault("shards_per_gpu", cluster.shards_per_gpu)
    kw.setdefault("availability_ttl", 0)
    return SlurmBackend(spool, bin_dir=cluster.bin_dir, slurm_conf=cluster.conf, **kw)


@pytest.fixture
def backend(slurm: LocalSlurm, tmp_path: Path) -> Iterator[SlurmBackend]:
    yield make_backend(slurm, tmp_path / "spool")
    slurm.cancel_all()


class Counter:
    """Wraps a backend's command runner and keeps every argv it ran."""

    def __init__(self, backend: SlurmBackend):
        self.calls: list[list[str]] = []
        self.inner = backend.runner
        backend.runner = self

    async def __call__(self, argv, stdin=None):
        self.calls.append(list(argv))
        return await self.inner(argv, stdin)

    def count(self, program: str) -> int:
        return sum(Path(c[0]).name == program for c in self.calls)


# -- real jobs ------------------------------------------------------------------
async def test_cpu_job_sees_exactly_its_environment(backend, tmp_path):
    job_spec = spec(CPU, tmp_path, env={"GPUAF_PROFILE": "cpu", "LANG": "C.UTF-8"})
    job = await backend.submit(job_spec)
    seen = seen_by(job_spec)
    env = seen["env"]
    assert CANARY not in env and env["GPUAF_PROFILE"] == "cpu" and env["LANG"] == "C.UTF-8"
    assert env["GPUAF_JOB_ID"] == env["SLURM_JOB_ID"] == job
    assert "CUDA_VISIBLE_DEVICES" not in env and "GPUAF_SECRETS_FILE" not in env
    assert seen["cwd"] == str(tmp_path)
    # nothing but spec.env, Slurm's own variables and the few that slurmd and sh add
    slurmd = {"ENVIRONMENT", "HOSTNAME", "TMPDIR", "PWD", "GPUAF_JOB_ID"}
    foreign = {k for k in env if not k.startswith(("SLURM_", "SLURMD_"))}
    assert foreign - slurmd == set(job_spec.env), foreign
    done = await wait_for(backend, job, JobState.DONE)
    assert done.exit_code == 0


@pytest.mark.parametrize(
    ("p", "devices", "extra"),
    [
        (GPU1, 1, {"SLURM_GPUS_ON_NODE": "1"}),
        (GPU2, 2, {"SLURM_GPUS_ON_NODE": "2"}),
        (
            MPS25,
            1,
            {
                "SLURM_SHARDS_ON_NODE": "1",
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "25",
                "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=20480M",
            },
        ),
        (MPS50, 1, {"SLURM_SHARDS_ON_NODE": "2", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50"}),
    ],
    ids=["gpu1", "gpu2", "shard-25", "shard-50"],
)
async def test_gpu_jobs_see_their_devices_and_secrets(backend, tmp_path, p, devices, extra):
    job_spec = spec(p, tmp_path, nap=30, secrets={"GPUAF_TOKEN": SECRET, "OTHER": "x"})
    job = await backend.submit(job_spec)
    seen = seen_by(job_spec)
    env = seen["env"]
    assert len(env["CUDA_VISIBLE_DEVICES"].split(",")) == devices
    assert {k: env.get(k) for k in extra} == extra
    assert CANARY not in env
    secrets_file = Path(env["GPUAF_SECRETS_FILE"])
    assert secrets_file.is_absolute() and secrets_file.parent == backend.spool / "secrets"
    assert seen["secrets_mode"] == "0o600"
    assert json.loads(Path(job_spec.command[3] + ".secrets").read_text()) == job_spec.secrets
    running = await wait_for(backend, job, JobState.RUNNING)
    assert running.host == NODE
    assert len(running.gpus) == devices
    # the secret is nowhere but in its file: not in the request, the job, Slurm or our logs
    script = await backend.runner(
        [backend.program("scontrol"), "write", "batch_script", job, "-"], None
    )
    assert "GPUAF_SECRETS_FILE" in script.stdout
    squeue = await backend.runner([backend.program("squeue"), "-h", "--states=all", "-o", "%all"])
    shown = await backend.runner([backend.program("scontrol"), "-d", "show", "job", job])
    places = [backend.describe(job_spec), script.stdout, squeue.stdout, shown.stdout, str(env)]
    places += [p.read_text() for p in (backend.spool / "logs").iterdir()]
    places += [p.read_text() for p in (backend.spool / "jobs").glob("*/*.json")]
    assert not [text for text in places if SECRET in text]
    await backend.cancel(job)
    assert not secrets_file.exists()
    assert (await wait_for(backend, job, JobState.CANCELLED)).reason == "The job was cancelled."


async def test_secrets_file_is_removed_when_the_job_ends(backend, tmp_path):
    job_spec = spec(CPU, tmp_path, secrets={"GPUAF_TOKEN": SECRET})
    job = await backend.submit(job_spec)
    path = Path(seen_by(job_spec)["env"]["GPUAF_SECRETS_FILE"])
    await wait_for(backend, job, JobState.DONE)
    assert not path.exists()
    assert not list((backend.spool / "secrets").iterdir())


async def test_injection_values_reach_the_job_unchanged(backend, tmp_path):
    pwned = Path("/tmp/gpuaf-pwned")
    pwned.unlink(missing_ok=True)
    job_spec = spec(
        CPU,
        tmp_path,
        env={"NASTY": NASTY, "EMPTY": "", "UNICODE": "Grüße ✓"},
        args=(NASTY, "--x=$(id)", "", "-", "line\n#SBATCH --gres=gpu:2\n"),
        secrets={"TOKEN": NASTY},
    )
    job = await backend.submit(job_spec)
    seen = seen_by(job_spec)
    assert seen["env"]["NASTY"] == NASTY and seen["env"]["EMPTY"] == ""
    assert seen["env"]["UNICODE"] == "Grüße ✓"
    assert seen["argv"] == [NASTY, "--x=$(id)", "", "-", "line\n#SBATCH --gres=gpu:2\n"]
    assert "CUDA_VISIBLE_DEVICES" not in seen["env"]  # the #SBATCH line in an argument is inert
    assert json.loads(Path(job_spec.command[3] + ".secrets").read_text()) == {"TOKEN": NASTY}
    await wait_for(backend, job, JobState.DONE)
    assert not pwned.exists()


async def test_status_of_many_jobs_is_one_squeue_call(backend, tmp_path):
    specs = [spec(MPS25, tmp_path, nap=60, tag=f"s{i}") for i in range(5)]
    specs[1:] = [spec(GPU1, tmp_path, nap=60, tag=f"s{i}") for i in (1, 2, 3, 4)]
    jobs = [await backend.submit(specs[0])]
    seen_by(specs[0])  # the shard job runs first: whole-GPU jobs do not keep it out
    jobs += [await backend.submit(s) for s in specs[1:]]
    seen_by(specs[1])
    seen_by(specs[2])
    counter = Counter(backend)
    statuses = await backend.status([*jobs, "999999", "not-a-job"])
    assert counter.count("squeue") == 1 and counter.count("scontrol") <= 1
    assert len(counter.calls) <= 2
    states = [statuses[j].state for j in jobs]
    assert states == [JobState.RUNNING] * 3 + [JobState.PENDING] * 2
    # two whole-GPU jobs hold both GPUs (one shared with the shard job): two wait, in order
    assert [statuses[j].queue_position for j in jobs] == [None, None, None, 1, 2]
    assert statuses[jobs[3]].reason in ("waiting for a free GPU", "other jobs are ahead")
    assert {statuses[j].host for j in jobs[:3]} == {NODE}
    assert statuses["999999"].state == JobState.UNKNOWN
    assert statuses["not-a-job"].reason == "The batch system no longer lists the job."
    # each round asks scontrol for the GPUs of at most one newly running job, and keeps them
    for _ in range(3):
        counter.calls.clear()
        statuses = await backend.status(jobs)
        assert counter.count("squeue") == 1 and counter.count("scontrol") <= 1
    counter.calls.clear()
    statuses = await backend.status(jobs)
    assert counter.calls and counter.count("scontrol") == 0
    assert [len(statuses[j].gpus) for j in jobs] == [1, 1, 1, 0, 0]
    assert {statuses[j].gpus for j in jobs[1:3]} == {("0",), ("1",)}


async def test_queue_position_counts_per_profile(backend, tmp_path):
    blocker = await backend.submit(spec(GPU2, tmp_path, nap=60, tag="b"))
    await wait_for(backend, blocker, JobState.RUNNING)
    first = await backend.submit(spec(GPU1, tmp_path, nap=60, tag="f"))
    second = await backend.submit(spec(GPU1, tmp_path, nap=60, tag="g"))
    other = await backend.submit(spec(GPU2, tmp_path, nap=60, tag="o"))
    statuses = await backend.status([first, second, other])
    assert [statuses[j].queue_position for j in (first, second, other)] == [1, 2, 1]
    avail = await backend.availability([GPU1, GPU2])
    assert (avail["gpu-1"].waiting, avail["gpu-2"].waiting, avail["gpu-2"].busy) == (2, 1, 1)
    await backend.cancel(blocker)
    running = await wait_for(backend, first, JobState.RUNNING)
    assert running.queue_position is None
    assert (await backend.status([other]))[other].queue_position == 1


async def test_cancel_and_gone_jobs(backend, tmp_path):
    job = await backend.submit(spec(CPU, tmp_path, nap=60))
    await wait_for(backend, job, JobState.RUNNING)
    await backend.cancel(job)
    await backend.cancel(job)  # twice: not an error
    await backend.cancel("987654")  # never existed: not an error
    await backend.cancel("--all")  # not an id: ignored, never reaches scancel
    assert (await wait_for(backend, job, JobState.CANCELLED)).state == JobState.CANCELLED
    # a record of a job the batch system forgot (purged while the hub was down)
    live = backend.spool / "jobs" / "live"
    for job_id, extra in (("900001", {"cancelled": True}), ("900002", {})):
        record = {"job_id": job_id, "name": "old", "user": "alice", "profile": "cpu", **extra}
        (live / f"{job_id}.json").write_text(json.dumps(record))
    statuses = await backend.status(["900001", "900002"])
    assert statuses["900001"].state == JobState.CANCELLED
    assert statuses["900002"].state == JobState.UNKNOWN
    assert statuses["900002"].reason == "The batch system no longer lists the job."
    assert not list(live.glob("9000*.json"))  # both settled in jobs/done


async def test_a_restarted_hub_keeps_its_jobs(slurm, backend, tmp_path):
    job = await backend.submit(spec(MPS25, tmp_path, nap=60))
    await wait_for(backend, job, JobState.RUNNING)
    again = make_backend_without_cancel(slurm, backend.spool)
    assert (await again.status([job]))[job].state == JobState.RUNNING
    await again.cancel(job)
    status = await wait_for(backend, job, JobState.CANCELLED)
    assert status.reason == "The job was cancelled."


def make_backend_without_cancel(cluster: LocalSlurm, spool: Path) -> SlurmBackend:
    return SlurmBackend(spool, bin_dir=cluster.bin_dir, slurm_conf=cluster.conf)


async def test_failed_job_has_a_reason_and_exit_code(backend, tmp_path):
    failing = JobSpec(
        name="gpuaf-fail",
        user="alice",
        profile=CPU,
        command=(sys.executable, "-c", "import sys; sys.exit(3)"),
        env={"PATH": os.environ["PATH"]},
    )
    job = await backend.submit(failing)
    status = await wait_for(backend, job, JobState.FAILED)
    assert status.exit_code == 3 and "exit code 3" in status.reason
    again = await backend.status([job])  # from the record now
    assert again[job].state == JobState.FAILED and again[job].exit_code == 3


async def test_availability_follows_bookings(backend, tmp_path):
    profiles = [CPU, GPU1, GPU2, MPS25, MPS50, MIG]

    async def numbers():
        avail = await backend.availability(profiles)
        return {n: (a.capacity, a.free, a.busy, a.waiting) for n, a in avail.items()}

    before = await numbers()
    assert before["gpu-1"] == (2, 2, 0, 0) and before["gpu-2"] == (1, 1, 0, 0)
    assert before["mps-25"] == (8, 8, 0, 0) and before["mps-50"] == (4, 4, 0, 0)
    assert before["mig-1g"][:2] == (0, 0)
    assert before["cpu"][:2] == (8, 8)  # 8 CPUs on the node, 1 each
    assert (await backend.availability([MIG]))["mig-1g"].note == (
        "no node of the cluster offers this slice"
    )
    shard = await backend.submit(spec(MPS25, tmp_path, nap=60, tag="a"))
    await wait_for(backend, shard, JobState.RUNNING)
    after_shard = await numbers()
    assert after_shard["mps-25"] == (8, 7, 1, 0) and after_shard["mps-50"][:2] == (4, 3)
    # Slurm 22.05 books a whole GPU even where shards are in use
    assert after_shard["gpu-1"][:2] == (2, 2) and after_shard["gpu-2"][:2] == (1, 1)
    assert after_shard["cpu"][:2] == (8, 7)
    whole = [await backend.submit(spec(GPU1, tmp_path, nap=60, tag=f"b{i}")) for i in (0, 1)]
    await wait_for(backend, whole[0], JobState.RUNNING)
    await wait_for(backend, whole[1], JobState.RUNNING)
    waiting = await backend.submit(spec(GPU1, tmp_path, nap=60, tag="c"))
    after_gpu = await numbers()
    assert after_gpu["gpu-1"] == (2, 0, 2, 1) and after_gpu["gpu-2"][:2] == (1, 0)
    assert after_gpu["mps-25"] == (8, 0, 1, 0)  # shards avoid GPUs booked whole
    assert after_gpu["cpu"][:2] == (8, 5)
    for job in (shard, *whole, waiting):
        await backend.cancel(job)
    await wait_for(backend, whole[1], JobState.CANCELLED)
    assert (await numbers())["gpu-2"][:2] == (1, 1)


async def test_availability_is_cached_for_open_forms(slurm, tmp_path):
    backend = make_backend(slurm, tmp_path / "spool", availability_ttl=30)
    counter = Counter(backend)
    await asyncio.gather(*(backend.availability([GPU1, CPU]) for _ in range(5)))
    assert len(counter.calls) == 2  # scontrol show node + squeue, once


async def test_a_slice_the_cluster_lacks_is_refused(backend, tmp_path):
    with pytest.raises(BackendError, match="No node of the cluster can run a MIG-1G slice") as e:
        await backend.submit(spec(MIG, tmp_path, secrets={"T": SECRET}))
    assert e.value.status == 409
    assert not list((backend.spool / "secrets").iterdir())


async def test_missing_commands_give_a_clear_error(tmp_path):
    backend = SlurmBackend(tmp_path / "spool", bin_dir=tmp_path / "nowhere")
    with pytest.raises(BackendError, match="cannot run the batch system's commands"):
        await backend.status(["1"])


def test_without_slurm_the_suite_skips_or_fails_as_asked(monkeypatch):
    import support.slurm as scratch

    monkeypatch.setattr(scratch, "_binary", lambda name: None)
    assert "Slurm is not installed" in scratch.slurm_unavailable()
    monkeypatch.delenv("GPUAF_REQUIRE_SLURM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install slurm-wlm munge"):
        scratch.require_slurm()
    monkeypatch.setenv("GPUAF_REQUIRE_SLURM", "1")
    with pytest.raises(pytest.fail.Exception, match="required"):
        scratch.require_slurm()


def test_a_stopped_cluster_leaves_no_process_behind(slurm):
    cluster = start_slurm(gpus=1)
    daemons = [p.pid for p in cluster.procs]
    cluster.run("sbatch", "--mem=10M", "--output=/dev/null", "--wrap", "sleep 300")
    deadline = time.monotonic() + 20
    while not [p for p in cluster.leftovers() if p.name() == "sleep"]:
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.1)
    assert cluster.backend_settings()["slurm"]["mps_gres"] == "shard"
    cluster.stop()
    assert not cluster.base.exists()
    alive = [p for p in daemons if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == [] and [p for p in cluster.leftovers() if p.status() != "zombie"] == []
    cluster.stop()  # twice: nothing left to do


# -- the gres mps variant, with a MIG instance ---------------------------------------
async def test_mps_gres_and_mig_jobs(slurm_mps, tmp_path):
    backend = make_backend(slurm_mps, tmp_path / "spool")
    mps_spec = spec(MPS25, tmp_path, nap=60)
    mig_spec = spec(MIG, tmp_path, nap=60)
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in backend.describe(mps_spec)
    jobs = [await backend.submit(mps_spec), await backend.submit(mig_spec)]
    mps_env, mig_env = seen_by(mps_spec)["env"], seen_by(mig_spec)["env"]
    assert mps_env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"  # set by Slurm itself
    assert mps_env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20480M"
    assert mps_env["CUDA_VISIBLE_DEVICES"] == "0"
    assert mig_env["CUDA_VISIBLE_DEVICES"] == "2"  # the third device: the MIG instance
    assert CANARY not in mps_env and CANARY not in mig_env
    statuses = await backend.status(jobs)
    assert all(s.state == JobState.RUNNING for s in statuses.values())
    avail = await backend.availability([MPS25, MPS50, MIG, GPU1])
    assert (avail["mps-25"].capacity, avail["mps-25"].free, avail["mps-25"].busy) == (8, 7, 1)
    assert (avail["mps-50"].capacity, avail["mps-50"].free) == (4, 3)
    assert (avail["mig-1g"].capacity, avail["mig-1g"].free, avail["mig-1g"].busy) == (1, 0, 1)
    assert (avail["gpu-1"].capacity, avail["gpu-1"].free) == (2, 2)
    for job in jobs:
        await backend.cancel(job)
    slurm_mps.cancel_all()
