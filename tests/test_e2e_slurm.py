"""A whole session on the real Slurm, through the hub: spawn on a shard slice, the job's
environment, JupyterLab through the proxy, stop, the job gone."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import psutil
import pytest
from support.login import hub_token, login
from support.stack import start_server, start_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
SMALL = {"cpus": 1, "memory": "512M", "walltime": "1h"}
SMALL_PROFILES = [
    {"name": "cpu", "display_name": "CPU only", "kind": "cpu", **SMALL},
    {
        "name": "mps-25",
        "display_name": "MPS 25 %",
        "kind": "mps",
        "mps_thread_percentage": 25,
        "groups": ["neutrino"],
        **SMALL,
    },
    {"name": "gpu-1", "display_name": "1 GPU", "kind": "gpu", "gpus": 1, **SMALL},
]


def _server_of_job(job_id: str) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get("SLURM_JOB_ID") == job_id and any(
                "jupyterhub-singleuser" in part for part in proc.info["cmdline"] or []
            ):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no server process of job {job_id}")


def test_a_session_on_a_slurm_shard(slurm, tmp_path):
    venv_bin = str(Path(sys.executable).parent)
    stack = start_stack(
        tmp_path,
        simulate=None,
        backend={
            "kind": "slurm",
            "slurm": {**slurm.backend_settings()["slurm"], "conf": str(slurm.conf)},
        },
        sessions={
            "singleuser_cmd": ["jupyterhub-singleuser", "--allow-root"],
            "environment": {"PATH": f"{venv_bin}:/usr/bin:/bin"},
        },
        profiles=SMALL_PROFILES,  # the scratch Slurm node has 8 CPUs and 8000 MiB
    )
    try:
        client = login(stack.url, "bob")  # neutrino: may book mps-25, a shard
        token = hub_token(client, "bob")
        client.close()
        auth = {"Authorization": f"token {token}"}
        slices = {s["name"]: s for s in httpx.get(f"{stack.api}/slices", headers=auth).json()}
        assert slices["mps-25"]["availability"]["capacity"] == 8  # 2 GPUs x 4 shards
        assert slices["gpu-1"]["availability"]["capacity"] == 2

        start_server(stack, "bob", auth, "mps-25", timeout=90)

        # the job the hub booked is a real Slurm job with the shard's environment
        jobs = slurm.run("squeue", "--noheader", "--format=%i %T %b").split("\n")
        [line] = [j for j in jobs if j.strip()]
        job_id, state, gres = line.split()
        assert state == "RUNNING" and "shard:1" in gres
        proc = _server_of_job(job_id)
        env = proc.environ()
        assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
        assert env["SLURM_SHARDS_ON_NODE"] == "1"
        assert env["JUPYTERHUB_API_TOKEN"]  # loaded from the secrets file by gpuaf-job
        assert "GPUAF_SECRETS_FILE" not in env
        assert "SLURM_CONF" not in env or env["SLURM_CONF"] == str(slurm.conf)
        assert env["GPUAF_PROFILE"] == "mps-25"

        # JupyterLab through the proxy
        lab = httpx.get(f"{stack.url}user/bob/lab", headers=auth, timeout=30)
        assert lab.status_code == 200 and "JupyterLab" in lab.text

        def busy() -> int:  # the form's figures are cached for a few seconds
            rows = httpx.get(f"{stack.api}/slices", headers=auth).json()
            return next(s for s in rows if s["name"] == "mps-25")["availability"]["busy"]

        wait_until(lambda: busy() == 1, 30, "the booking in the availability figures", stack)

        stopped = httpx.delete(f"{stack.url}hub/api/users/bob/server", headers=auth, timeout=60)
        assert stopped.status_code in (202, 204)
        wait_until(
            lambda: job_id not in slurm.run("squeue", "--noheader", "--format=%i"),
            60,
            "the job's removal",
            stack,
        )
        wait_until(lambda: not proc.is_running(), 30, "the server's exit", stack)
    finally:
        assert stack.interrupt() == 0, stack.log_tail()
