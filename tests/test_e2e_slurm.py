"""A whole session on the real Slurm, through the hub: spawn on a shard slice, the job's
environment, JupyterLab through the proxy, stop, the job gone."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.ledger_rows import job_gpu_hours, latest_session
from support.login import browser_login, hub_token, login
from support.stack import start_server, start_stack, wait_until

from gpuaf.ledger.models import SessionRecord

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


@pytest.fixture(scope="module")
def slurm_stack(slurm, tmp_path_factory, e2e_ledger_url):
    venv_bin = str(Path(sys.executable).parent)
    stack = start_stack(
        tmp_path_factory.mktemp("slurm-stack"),
        ledger_url=e2e_ledger_url,
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
    yield stack
    assert stack.interrupt() == 0, stack.log_tail()


def test_a_session_on_a_slurm_shard(slurm, slurm_stack):
    stack = slurm_stack
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


def _progress(stack, user: str, auth: dict) -> list[dict]:
    """The spawn's progress events until it is ready or failed, as the progress page reads them."""
    events = []
    url = f"{stack.url}hub/api/users/{user}/server/progress"
    with httpx.stream("GET", url, headers=auth, timeout=120) as reply:
        for line in reply.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("ready") or events[-1].get("failed"):
                    return events
    return events


def _latest_session(stack, user: str) -> SessionRecord:
    return latest_session(stack.settings_path, user)


def _spawn_behind_a_full_node(slurm, stack, auth: dict, then) -> tuple[list[dict], SessionRecord]:
    """bob books gpu-1 while both GPUs are taken; ``then(job_id)`` acts on his waiting job."""
    post = httpx.post(
        f"{stack.url}hub/api/users/bob/server", json={"profile": "gpu-1"}, headers=auth, timeout=60
    )
    assert post.status_code in (201, 202), (post.text, slurm.run("squeue", "--format=%i %T %b %r"))
    done: dict = {}
    reader = threading.Thread(target=lambda: done.update(events=_progress(stack, "bob", auth)))
    reader.start()
    record = wait_until(
        lambda: (r := _latest_session(stack, "bob")) and r.state == "queued" and r.job_id and r,
        60,
        "bob's job in the queue",
        stack,
    )
    wait_until(lambda: record.job_id in slurm.run("squeue", "--noheader", "--format=%i"), 30,
               "the job in squeue", stack)  # fmt: skip
    time.sleep(2)  # the progress page has shown the queue position
    then(record.job_id)
    reader.join(timeout=90)
    wait_until(
        lambda: record.job_id not in slurm.run("squeue", "--noheader", "--format=%i"),
        60,
        "the job's removal",
        stack,
    )
    return done["events"], _latest_session(stack, "bob")


def test_held_and_failed_sessions_on_slurm(slurm, slurm_stack):
    stack = slurm_stack
    client = login(stack.url, "bob")
    auth = {"Authorization": f"token {hub_token(client, 'bob')}"}
    client.close()
    # another user's batch job takes both GPUs of the node
    blocker = slurm.run(
        "sbatch", "--parsable", "--gres=gpu:2", "--cpus-per-task=1", "--mem=256M",
        "--output=/dev/null", "--wrap", "sleep 600",
    ).strip()  # fmt: skip
    try:
        wait_until(
            lambda: "RUNNING" in slurm.run("squeue", "--noheader", "--format=%T", "-j", blocker),
            30, "the blocking job", stack,
        )  # fmt: skip
        # held: an administrator holds the waiting job; the spawn ends, the job is removed
        events, record = _spawn_behind_a_full_node(
            slurm, stack, auth, lambda job: slurm.run("scontrol", "hold", job)
        )
        messages = [e.get("message", "") for e in events]
        assert any(
            m.startswith("Queued: position 1 among jobs waiting for 1 GPU") for m in messages
        )
        assert events[-1].get("failed"), events
        held = (
            "The batch system held the job: The job is held by an administrator. "
            "The job was removed; nothing is left running."
        )
        assert held in events[-1]["message"]
        assert record.state == "failed" and record.reason.startswith("The batch system held")

        # failed: the waiting job is cancelled from outside before its server starts
        events, record = _spawn_behind_a_full_node(
            slurm, stack, auth, lambda job: slurm.run("scancel", job)
        )
        assert events[-1].get("failed"), events
        assert record.state == "failed"
        assert record.reason == "The job was cancelled by an administrator or the batch system."
        assert record.reason in events[-1]["message"]
        server = httpx.get(f"{stack.url}hub/api/users/bob", headers=auth).json()["servers"]
        assert server == {}  # nothing left half-started
    finally:
        slurm.run("scancel", blocker, check=False)


def test_a_notebook_sweep_as_a_slurm_job_array(slurm, slurm_stack, tmp_path):
    """3 items of one sbatch --array: the injected values in the outputs, in bob's home
    and in the portal; a second job, cancelled while it waits, leaves nothing queued."""
    from support.notebooks import write_notebook

    stack = slurm_stack
    client = login(stack.url, "bob")
    token = hub_token(client, "bob")
    client.close()
    auth = {"Authorization": f"token {token}"}
    nb = json.loads(write_notebook(tmp_path / "scan.ipynb").read_text())
    body = {
        "notebook": nb, "path": "scan.ipynb", "slice": "cpu", "name": "scan",
        "parameters": {"name": '"slurm"'}, "sweep": {"epochs": "[1, 2, 3]"},
        "idempotency_key": "6f1c2a47-5b7e-4d0e-9c1e-2f4b8a9d3e10",
    }  # fmt: skip
    reply = httpx.post(f"{stack.api}/jobs", json=body, headers=auth, timeout=60)
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["backend"] == "slurm" and job["batch_id"].isdigit()
    assert [i["parameters"]["epochs"] for i in job["items"]] == [1, 2, 3]
    queued = slurm.run("squeue", "--noheader", "--array", f"--jobs={job['batch_id']}",
                       "--Format=JobArrayID:|,Name:")  # fmt: skip
    assert {line.split("|")[0] for line in queued.splitlines()} == {
        f"{job['batch_id']}_{i}" for i in range(3)
    }

    def finished():
        got = httpx.get(f"{stack.api}/jobs/{job['id']}", headers=auth).json()
        return got if got["state"] in ("succeeded", "failed", "cancelled") else None

    done = wait_until(finished, 240, "the job array to finish", stack)
    assert done["state"] == "succeeded", done
    assert {i["host"] for i in done["items"]} == {slurm.node}
    folder = Path(done["output_dir"])
    assert folder == stack.data_dir / "homes" / "bob" / "gpuaf-jobs" / job["id"]
    for i in range(3):
        executed = (folder / f"item-{i}" / "executed.ipynb").read_text()
        assert f"lr=0.1 epochs={i + 1} name=slurm" in executed
        page = httpx.get(stack.url.rstrip("/") + done["items"][i]["notebook_url"], headers=auth)
        assert f"lr=0.1 epochs={i + 1} name=slurm" in page.text

    # a second job, cancelled at once: its array leaves the queue, its items are cancelled
    body = {**body, "slice": "gpu-1", "idempotency_key": "0c5e8f2a-1d3b-4a6c-8e9f-7b2d4c6a8e01"}
    body["sweep"] = {"epochs": "[1, 2]"}
    held = httpx.post(f"{stack.api}/jobs", json=body, headers=auth, timeout=60).json()
    cancelled = httpx.post(f"{stack.api}/jobs/{held['id']}/cancel", headers=auth, timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert {i["state"] for i in cancelled.json()["items"]} == {"cancelled"}
    wait_until(
        lambda: not slurm.run("squeue", "--noheader", f"--jobs={held['batch_id']}").strip(),
        30, "the cancelled array to leave the queue", stack,
    )  # fmt: skip


def test_a_dask_cluster_of_two_workers_on_slurm_shards(
    slurm, slurm_stack, monkeypatch, chromium, artifacts
):
    """facility_cluster books 2 workers as mps-25 (one shard each): they compute, the
    portal follows them as the cluster's items, refuses a third, and closing ends it."""
    import os

    from distributed import Client

    from gpuaf.dask import facility_cluster

    stack = slurm_stack
    client = login(stack.url, "bob")  # neutrino: may book mps-25
    token = hub_token(client, "bob")
    client.close()
    auth = {"Authorization": f"token {token}"}
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))  # the notebook's own sbatch
    monkeypatch.setenv("PATH", f"{slurm.bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    portal = stack.api.removesuffix("/api/v1")
    before = job_gpu_hours(stack.settings_path, "bob")

    cluster = facility_cluster(
        slice="mps-25", workers=2, walltime="10m", name="fit", portal=portal, token=token,
        scheduler_options={"host": "127.0.0.1"},
    )  # fmt: skip
    with cluster, Client(cluster) as dask:
        script = cluster.job_script()
        assert "#SBATCH --gres=shard:1" in script and "#SBATCH --time=0-00:10:00" in script
        assert f"#SBATCH --job-name={cluster.gpuaf_id}" in script
        dask.wait_for_workers(2, timeout=180)
        # the workers have the session's Python, not the tests: builtins only
        total = dask.submit(sum, dask.map(pow, range(100), [2] * 100)).result(timeout=60)
        assert total == sum(x * x for x in range(100))
        names = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "SLURM_SHARDS_ON_NODE")
        names += ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",)
        seen = {k: dask.run(os.getenv, k) for k in names}
        envs = [{k: seen[k][w] for k in names} for w in seen[names[0]]]
        assert len({e["SLURM_JOB_ID"] for e in envs}) == 2  # two batch jobs
        for env in envs:
            assert env["SLURM_SHARDS_ON_NODE"] == "1" and env["CUDA_VISIBLE_DEVICES"] in "01"
            assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
        with pytest.raises(ValueError, match="booked 2 worker"):
            cluster.scale(3)

        def both_running():
            got = httpx.get(f"{stack.api}/jobs/{cluster.gpuaf_id}", headers=auth).json()
            running = [i for i in got["items"] if i["state"] == "running"]
            return got if len(running) == 2 else None

        job = wait_until(both_running, 60, "the portal to see both workers run", stack)
        assert job["kind"] == "dask" and job["workers"] == 2 and job["profile"] == "mps-25"
        assert {i["parameters"]["worker"] for i in job["items"]} == {
            e["SLURM_JOB_ID"] for e in envs
        }
        assert {i["host"] for i in job["items"]} == {slurm.node}
        # the cluster's page, as bob sees it in his jobs
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        browser_login(page, stack.url, "bob")
        page.goto(f"{stack.url}services/portal/jobs/{cluster.gpuaf_id}")
        assert page.locator("h1").inner_text() == "Dask cluster fit"
        assert page.locator("tbody tr").count() == 2
        page.screenshot(path=artifacts / "dask-01-cluster.png", full_page=True)
        context.close()

    closed = httpx.get(f"{stack.api}/jobs/{cluster.gpuaf_id}", headers=auth).json()
    assert closed["state"] == "succeeded", closed
    assert closed["reason"].startswith("Closed by bob. 2 worker(s) ran")
    assert all(i["started_at"] and i["finished_at"] for i in closed["items"])
    log = httpx.get(stack.url.rstrip("/") + closed["items"][0]["log_url"], headers=auth)
    assert log.status_code == 200 and "Start worker at" in log.text  # the worker's output
    wait_until(
        lambda: not slurm.run("squeue", "--noheader", f"--name={cluster.gpuaf_id}").strip(),
        30, "the workers to leave the queue", stack,
    )  # fmt: skip
    # the workers' GPU time is bob's: a quarter of a GPU each while they ran
    after = job_gpu_hours(stack.settings_path, "bob")
    ran = sum(
        (dt.datetime.fromisoformat(i["finished_at"]) - dt.datetime.fromisoformat(i["started_at"]))
        .total_seconds()
        for i in closed["items"]
    )  # fmt: skip
    assert ran > 0 and after - before == pytest.approx(0.25 * ran / 3600, abs=1e-6)
