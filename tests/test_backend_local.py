"""The local backend: real processes, device allocation, restarts and vanished jobs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from gpuaf.gpus import parse_simulation
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.allocation import Booking, allocate, count_startable
from gpuaf.spawners.backends.base import JobSpec, JobState
from gpuaf.spawners.backends.local import LocalBackend

INVENTORY = parse_simulation("2xH100-80GB,H200-141GB[3g.71gb,2x1g.18gb]")
SLEEPER = (sys.executable, "-c", "import time, os; time.sleep(60)")


def profile(**kw) -> SliceProfile:
    return SliceProfile(**{"name": "p", "display_name": "P", **kw})


CPU = profile(name="cpu", kind="cpu")
GPU1 = profile(name="gpu-1", kind="gpu", gpus=1, gpu_models=["H100"])
GPU2 = profile(name="gpu-2", kind="gpu", gpus=2, gpu_models=["H100"])
MIG1 = profile(name="mig-1g", kind="mig", mig_profile="1g.18gb", gpu_models=["H200"])
MPS25 = profile(name="mps-25", kind="mps", mps_thread_percentage=25, mps_pinned_memory="20G")
MPS60 = profile(name="mps-60", kind="mps", mps_thread_percentage=60)


def test_allocation_counts():
    assert count_startable(GPU1, INVENTORY, [], 99) == 2
    assert count_startable(GPU2, INVENTORY, [], 99) == 1
    assert count_startable(MIG1, INVENTORY, [], 99) == 2
    assert count_startable(MPS25, INVENTORY, [], 99) == 8
    assert count_startable(MPS60, INVENTORY, [], 99) == 2
    assert count_startable(CPU, INVENTORY, [], 5) == 5


def test_mps_packs_onto_one_gpu_and_keeps_the_other_whole():
    first = allocate(MPS25, INVENTORY, [])
    booked = [Booking("mps-25", "mps", first, 25)]
    assert allocate(MPS25, INVENTORY, booked) == first
    assert count_startable(GPU1, INVENTORY, booked, 99) == 1
    assert allocate(GPU2, INVENTORY, booked) is None


def test_a_mig_instance_is_booked_once():
    one = allocate(MIG1, INVENTORY, [])
    two = allocate(MIG1, INVENTORY, [Booking("mig-1g", "mig", one)])
    assert one != two
    assert allocate(MIG1, INVENTORY, [Booking("x", "mig", one), Booking("x", "mig", two)]) is None


def _spec(p: SliceProfile, tmp_path, command=SLEEPER) -> JobSpec:
    return JobSpec(
        name="t",
        user="alice",
        profile=p,
        command=command,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        workdir=tmp_path,
    )


async def test_submit_status_cancel_with_a_real_process(tmp_path):
    backend = LocalBackend(tmp_path / "jobs", inventory=INVENTORY, max_sessions=16)
    job = await backend.submit(_spec(MPS25, tmp_path))
    status = (await backend.status([job]))[job]
    assert status.state == JobState.RUNNING
    record = json.loads((tmp_path / "jobs" / f"{job}.json").read_text())
    env = Path(f"/proc/{record['pid']}/environ").read_bytes().split(b"\0")
    assert b"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25" in env
    assert b"CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=20480M" in env
    assert b"GPUAF_SIMULATED_GPUS=1" in env
    avail = await backend.availability([MPS25, GPU2])
    assert (avail["mps-25"].busy, avail["mps-25"].free) == (1, 7)
    assert avail["gpu-2"].free == 0
    await backend.cancel(job)
    assert (await backend.status([job]))[job].state == JobState.CANCELLED
    await backend.cancel(job)  # twice is fine
    assert (await backend.availability([GPU2]))["gpu-2"].free == 1


async def test_a_failing_server_reports_its_last_line(tmp_path):
    backend = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    cmd = (sys.executable, "-c", "import sys; print('boom: no such module'); sys.exit(3)")
    job = await backend.submit(_spec(CPU, tmp_path, cmd))
    for _ in range(100):
        status = (await backend.status([job]))[job]
        if status.state.final:
            break
        await asyncio.sleep(0.05)
    assert status.state == JobState.FAILED
    assert status.exit_code == 3
    assert "boom: no such module" in status.reason


async def test_a_job_that_does_not_fit_waits_in_line_and_starts_when_a_slice_frees(tmp_path):
    backend = LocalBackend(tmp_path / "jobs", inventory=INVENTORY, max_sessions=3)
    first, second = [await backend.submit(_spec(GPU1, tmp_path)) for _ in range(2)]
    whole = await backend.submit(_spec(GPU2, tmp_path))  # both H100s are taken
    third = await backend.submit(_spec(GPU1, tmp_path))
    cpu = await backend.submit(_spec(CPU, tmp_path))  # fits: a smaller job is not held back
    late = await backend.submit(_spec(CPU, tmp_path))  # the machine's session limit is reached
    status = await backend.status([first, second, whole, third, cpu, late])
    assert [status[j].state for j in (first, second, whole, third, cpu, late)] == [
        JobState.RUNNING, JobState.RUNNING, JobState.PENDING, JobState.PENDING,
        JobState.RUNNING, JobState.PENDING,
    ]  # fmt: skip
    assert (status[whole].queue_position, status[third].queue_position) == (1, 1)
    assert status[late].queue_position == 1 and status[whole].host is None
    table = await backend.availability([GPU1, GPU2, CPU])
    assert (table["gpu-1"].waiting, table["gpu-2"].waiting, table["cpu"].waiting) == (1, 1, 1)
    record = tmp_path / "jobs" / f"{third}.json"
    assert record.stat().st_mode & 0o777 == 0o600  # it holds the job's environment
    assert json.loads(record.read_text())["env"]["HOME"] == str(tmp_path)

    await backend.cancel(late)  # a waiting job leaves the line and forgets its environment
    assert "env" not in json.loads((tmp_path / "jobs" / f"{late}.json").read_text())
    await backend.cancel(first)  # one H100 frees: the older gpu-2 still cannot start,
    status = await backend.status([whole, third])  # the gpu-1 behind it can
    assert (status[whole].state, status[third].state) == (JobState.PENDING, JobState.RUNNING)
    assert status[third].gpus == (json.loads(record.read_text())["devices"][0],)
    assert "env" not in json.loads(record.read_text())  # started: the environment is gone
    await backend.cancel(second)
    await backend.cancel(third)
    assert (await backend.status([whole]))[whole].state == JobState.RUNNING
    assert (await backend.status([late]))[late].state == JobState.CANCELLED
    for job in (whole, cpu):
        await backend.cancel(job)


async def test_a_waiting_job_is_started_by_another_process_sharing_the_queue(tmp_path):
    hub = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    running = await hub.submit(_spec(GPU2, tmp_path))
    waiting = await hub.submit(_spec(GPU1, tmp_path))
    api = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)  # e.g. the portal API
    await api.cancel(running)
    both = await asyncio.gather(hub.status([waiting]), api.status([waiting]))
    assert [b[waiting].state for b in both] == [JobState.RUNNING, JobState.RUNNING]
    records = [json.loads(p.read_text()) for p in (tmp_path / "jobs").glob("*.json")]
    assert sum(1 for r in records if r["state"] == JobState.RUNNING) == 1  # started once
    await hub.cancel(waiting)


async def test_a_restarted_backend_still_knows_its_jobs(tmp_path):
    first = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    job = await first.submit(_spec(GPU1, tmp_path))
    second = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)  # e.g. after a hub restart
    assert (await second.status([job]))[job].state == JobState.RUNNING
    assert (await second.availability([GPU1]))["gpu-1"].busy == 1
    await second.cancel(job)
    assert (await second.status([job]))[job].state == JobState.CANCELLED


async def test_a_vanished_job_is_unknown_with_a_reason(tmp_path):
    first = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    job = await first.submit(_spec(CPU, tmp_path))
    pid = json.loads((tmp_path / "jobs" / f"{job}.json").read_text())["pid"]
    os.kill(pid, 9)  # the hub that started it is gone too: nobody reaps it
    time.sleep(0.3)  # deliberately blocking: the first backend's reaper must not run
    second = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    statuses = await second.status([job, "local-nonexistent"])
    assert statuses[job].state == JobState.UNKNOWN
    assert "gone" in statuses[job].reason
    assert statuses["local-nonexistent"].state == JobState.UNKNOWN


async def test_a_command_that_cannot_run_fails_with_a_reason(tmp_path):
    backend = LocalBackend(tmp_path / "jobs", inventory=INVENTORY)
    job = await backend.submit(_spec(CPU, tmp_path, ("/nonexistent/jupyterhub-singleuser",)))
    status = (await backend.status([job]))[job]
    assert status.state == JobState.FAILED
    assert status.reason == "The session could not be started on this machine."
    log = (tmp_path / "jobs" / f"{job}.log").read_text()
    assert "exec /nonexistent/jupyterhub-singleuser" in log
