"""Notebook jobs through the portal API of the running demo portal (local backend).

A parameterised notebook and a 3-item sweep run for real (papermill on the local queue);
the outputs land in alice's home and in the portal. Bad submissions are refused with a
clear 4xx and leave nothing behind: no ledger row, no job folder, no batch job.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import httpx
import nbformat
import pytest
from support.notebooks import write_notebook

pytestmark = pytest.mark.e2e


def nb_json(tmp_path, **kw) -> dict:
    return json.loads(write_notebook(tmp_path / "nb.ipynb", **kw).read_text())


def post(stack, token, body, headers_extra=None):
    return httpx.post(
        f"{stack.api}/jobs",
        json=body,
        headers={"Authorization": f"token {token}", **(headers_extra or {})},
        timeout=60,
    )


def request(tmp_path, **fields) -> dict:
    return {
        "notebook": nb_json(tmp_path),
        "path": "analysis/train.ipynb",
        "slice": "cpu",
        "idempotency_key": str(uuid.uuid4()),
        **fields,
    }


def follow(stack, token, job_id, timeout=180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(
            f"{stack.api}/jobs/{job_id}", headers={"Authorization": f"token {token}"}
        ).json()
        if job["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(1)


def folders(stack, user="alice") -> set[str]:
    root = stack.data_dir / "homes" / user / "gpuaf-jobs"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_a_sweep_runs_and_its_outputs_land_in_the_home_and_the_portal(stack, alice_token, tmp_path):
    body = request(
        tmp_path,
        parameters={"epochs": "7"},
        sweep={"lr": "[0.01, 0.1, 1.0]"},
        name="lr-scan",
        environment={"image": None, "pip": ["numpy==2.1.0"]},
    )
    reply = post(stack, alice_token, body)
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["name"] == "lr-scan" and job["profile"] == "cpu" and job["backend"] == "local"
    assert job["source"] == "analysis/train.ipynb"
    assert [i["parameters"] for i in job["items"]] == [
        {"epochs": 7, "lr": 0.01}, {"epochs": 7, "lr": 0.1}, {"epochs": 7, "lr": 1.0},
    ]  # fmt: skip
    # the retried click: the same job, nothing new
    again = post(stack, alice_token, body)
    assert again.status_code == 200 and again.json()["id"] == job["id"]

    done = follow(stack, alice_token, job["id"])
    assert done["state"] == "succeeded", done
    assert done["counts"] == {"succeeded": 3}
    home = stack.data_dir / "homes" / "alice" / "gpuaf-jobs" / job["id"]
    for i, lr in enumerate((0.01, 0.1, 1.0)):
        executed = nbformat.read(home / f"item-{i}" / "executed.ipynb", as_version=4)
        printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        assert f"lr={lr} epochs=7 name=run" in printed
        assert json.loads((home / f"item-{i}" / "status.json").read_text())["state"] == "succeeded"
        assert done["items"][i]["exit_code"] == 0
        assert done["items"][i]["started_at"] and done["items"][i]["finished_at"]
        # in the portal: the executed notebook as HTML, scripts off; the log
        auth = {"Authorization": f"token {alice_token}"}
        page = httpx.get(stack.url.rstrip("/") + done["items"][i]["notebook_url"], headers=auth)
        assert page.status_code == 200 and f"lr={lr} epochs=7" in page.text
        assert "sandbox" in page.headers["content-security-policy"]
        log = httpx.get(stack.url.rstrip("/") + done["items"][i]["log_url"], headers=auth)
        assert log.status_code == 200 and "Executing notebook" in log.text
    assert json.loads((home / "environment.json").read_text())["pip"] == ["numpy==2.1.0"]
    listed = httpx.get(f"{stack.api}/jobs", headers={"Authorization": f"token {alice_token}"})
    assert job["id"] in [j["id"] for j in listed.json()]


BAD = [
    ({"notebook": "{not json"}, 400, "is not JSON"),
    ({"notebook": {"nbformat": 4, "nbformat_minor": 5, "cells": "no"}}, 400, "nbformat 4"),
    ({"notebook": "x" * (10 * 1024 * 1024 + 1)}, 413, "at most 10.0 MiB"),
    ({"path": "../bob/steal.ipynb"}, 403, "outside your home"),
    ({"parameters": {"1lr": "0.1"}}, 400, "identifier"),
    ({"parameters": {"lr": "O.1"}}, 400, "not JSON"),
    ({"sweep": {"lr": json.dumps(list(range(101)))}}, 413, "at most 100"),
    ({"slice": "mps-25"}, 400, "Slices you may book: cpu,"),
    ({"target": "grid:nowhere"}, 400, "Targets: local"),
    ({"walltime": "9d"}, 400, "give 1m to"),
    ({"idempotency_key": "again"}, 400, "UUID"),
    ({"colour": "red"}, 400, "Unknown fields: colour"),
    ({"target": "grid:"}, 400, "is not local or grid:<site>"),
]


@pytest.mark.parametrize(("change", "status", "words"), BAD, ids=[b[2] for b in BAD])
def test_bad_submissions_are_refused_and_leave_nothing(
    stack, alice_token, tmp_path, change, status, words
):
    before = folders(stack)
    listed = httpx.get(f"{stack.api}/jobs", headers={"Authorization": f"token {alice_token}"})
    reply = post(stack, alice_token, {**request(tmp_path), **change})
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]
    assert folders(stack) == before
    after = httpx.get(f"{stack.api}/jobs", headers={"Authorization": f"token {alice_token}"})
    assert after.json() == listed.json()


def test_an_exhausted_gpu_quota_refuses_gpu_jobs_but_not_cpu_ones(stack, bob, tmp_path):
    from support.login import hub_token

    from gpuaf.ledger import Ledger
    from gpuaf.ledger.models import NotebookJob, NotebookJobItem
    from gpuaf.settings import load_settings

    token = hub_token(bob, "bob")
    ledger = Ledger(load_settings(stack.settings_path).ledger_url)
    now = dt.datetime.now(dt.UTC)
    with ledger.session() as db:  # 6 minutes on 1,000 GPUs: 100 GPU-hours of bob's 50
        db.add(NotebookJob(
            id="big-scan", user_name="bob", idempotency_key=str(uuid.uuid4()),
            request_digest="-", name="big-scan", profile="gpu-1", backend="local",
            walltime_s=3600, gpu_share=1000.0, output_dir="/nowhere", state="succeeded",
            items=[NotebookJobItem(index=0, state="succeeded", finished_at=now,
                                   started_at=now - dt.timedelta(minutes=6))],
        ))  # fmt: skip
        db.commit()
    try:
        before = folders(stack, "bob")
        reply = post(stack, token, request(tmp_path, slice="gpu-1"))
        assert reply.status_code == 403, reply.text
        assert "quota of 50 GPU-hours this month is used up" in reply.json()["detail"]
        assert "nothing was submitted" in reply.json()["detail"]
        assert folders(stack, "bob") == before
        reply = post(stack, token, request(tmp_path, slice="cpu", parameters={"lr": "2"}))
        assert reply.status_code == 201, reply.text
        assert follow(stack, token, reply.json()["id"])["state"] == "succeeded"
    finally:
        with ledger.session() as db:
            db.delete(db.get(NotebookJob, "big-scan"))
            db.commit()
        ledger.dispose()


TOKEN_BODY = """import base64, json, os
token = open(os.environ["BEARER_TOKEN_FILE"]).read().strip()
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(f"lr={lr} epochs={epochs} name={name} token-user={claims['preferred_username']}")
"""


def _session_env(user: str, data_dir) -> dict:
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        ours = "jupyterhub-singleuser" in cmdline and str(data_dir) in cmdline
        if env.get("JUPYTERHUB_USER") == user and ours:
            return env
    raise AssertionError(f"no session of {user}")


def test_the_cli_in_a_session_submits_follows_and_cancels(stack, alice_token, tmp_path):
    """`gpuaf submit`, `gpuaf jobs`, `jobs logs`, `jobs cancel` with the session's IAM token."""
    import subprocess
    import sys
    from pathlib import Path

    from support.stack import start_server

    auth = {"Authorization": f"token {alice_token}"}
    start_server(stack, "alice", auth, "cpu")
    try:
        session = _session_env("alice", stack.data_dir)
        home = Path(session["HOME"])
        write_notebook(home / "cli" / "fit.ipynb", body=TOKEN_BODY)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(home),
            "BEARER_TOKEN_FILE": session["BEARER_TOKEN_FILE"],
            "GPUAF_PORTAL_URL": session["GPUAF_PORTAL_URL"],
        }

        def gpuaf(*args, check=True):
            done = subprocess.run(
                [sys.executable, "-m", "gpuaf", *args], env=env, cwd=home / "cli",
                capture_output=True, text=True, timeout=240,
            )  # fmt: skip
            if check:
                assert done.returncode == 0, done.stdout + done.stderr
            return done

        out = gpuaf("submit", "fit.ipynb", "--slice", "cpu", "--param", "lr=0.5",
                    "--sweep", "epochs=1,2", "--name", "cli-fit", "--wait").stdout  # fmt: skip
        assert "submitted job cli-fit-" in out and "2 item(s) on cpu" in out
        assert "succeeded" in out.splitlines()[-1]
        job_id = out.split("submitted job ")[1].split(":")[0]
        listed = gpuaf("jobs").stdout
        assert job_id in listed and "2 succeeded" in listed
        log = gpuaf("jobs", "logs", job_id, "--item", "1").stdout
        assert "lr=0.5 epochs=2 name=run token-user=alice" in log  # the job has her token
        shown = gpuaf("jobs", "show", job_id).stdout
        assert 'item-0: succeeded  {"lr": 0.5, "epochs": 1}' in shown
        results = home / "gpuaf-jobs" / job_id / "item-1" / "executed.ipynb"
        assert "lr=0.5 epochs=2" in results.read_text()

        out = gpuaf("submit", "fit.ipynb", "--slice", "cpu", "--name", "to-cancel").stdout
        other = out.split("submitted job ")[1].split(":")[0]
        cancelled = gpuaf("jobs", "cancel", other).stdout
        assert f"job {other} (to-cancel): cancelled" in cancelled

        # refused before anything is sent, or by the portal: a clear message, exit 1
        bad = gpuaf("submit", "fit.ipynb", "--slice", "gpu-9", check=False)
        assert bad.returncode == 1 and "Slices you may book: cpu," in bad.stderr
        bad = gpuaf("submit", "/etc/hostname", "--slice", "cpu", check=False)
        assert bad.returncode == 1 and "outside your home" in bad.stderr
        env.pop("BEARER_TOKEN_FILE")
        bad = gpuaf("jobs", check=False)
        assert bad.returncode == 1 and "No bearer token found" in bad.stderr
    finally:
        httpx.delete(f"{stack.url}hub/api/users/alice/server", headers=auth)


def test_the_job_pages_show_items_and_cancel_from_the_browser(stack, alice, tmp_path):
    """The pages work without JavaScript: the list, a job with its items, cancel by form."""
    from support.login import hub_token

    token = hub_token(alice, "alice")
    job = post(stack, token, request(tmp_path, sweep={"lr": "[0.5, 0.25]"}, name="paged")).json()
    portal = f"{stack.url}services/portal"
    assert "/services/portal/jobs" in alice.get("/hub/home").text
    listing = alice.get(f"{portal}/jobs", headers={"Accept": "text/html"})  # login as the hub's
    assert (
        listing.status_code == 200 and f'href="/services/portal/jobs/{job["id"]}"' in listing.text
    )
    page = alice.get(f"{portal}/jobs/{job['id']}")
    assert page.status_code == 200
    assert "item-0" in page.text and "item-1" in page.text and '{"lr": 0.25}' in page.text
    # a cancel from another site's page is refused; from the portal's own page it works
    host = stack.url.split("//")[1].rstrip("/")
    forged = alice.post(
        f"{portal}/jobs/{job['id']}/cancel", headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403 and "portal's own page" in forged.json()["detail"]
    done = alice.post(
        f"{portal}/jobs/{job['id']}/cancel",
        headers={"Origin": f"http://{host}"},
        follow_redirects=False,
    )
    assert (
        done.status_code == 303 and done.headers["location"] == f"/services/portal/jobs/{job['id']}"
    )
    after = alice.get(f"{portal}/jobs/{job['id']}").text
    assert 'class="state-cancelled">cancelled' in after and "Cancel this job" not in after
    # another user sees no such job
    other = httpx.get(
        f"{stack.api}/jobs/{job['id']}",
        headers={"Authorization": f"token {hub_token(login_bob(stack), 'bob')}"},
    )
    assert other.status_code == 404 and "no job" in other.json()["detail"]


def login_bob(stack):
    from support.login import login

    return login(stack.url, "bob")


def test_the_same_click_five_times_at_once_makes_one_job(stack, alice_token, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    body = request(tmp_path, name="once")
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: post(stack, alice_token, body), range(5)))
    assert sorted(r.status_code for r in replies) == [200, 200, 200, 200, 201], [
        r.text for r in replies
    ]
    assert len({r.json()["id"] for r in replies}) == 1
    listed = httpx.get(f"{stack.api}/jobs", headers={"Authorization": f"token {alice_token}"})
    assert sum(1 for j in listed.json() if j["name"] == "once") == 1
    # the key used for another notebook is refused, not silently answered with the old job
    other = post(stack, alice_token, {**body, "parameters": {"lr": "0.5"}})
    assert other.status_code == 409 and "already used" in other.json()["detail"]


def test_a_token_for_the_job_that_is_not_valid_is_refused(stack, alice_token, tmp_path):
    before = folders(stack)
    reply = post(
        stack, alice_token, request(tmp_path), headers_extra={"X-Gpuaf-Job-Token": "a.b.c"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["detail"].startswith("The token sent for the job was refused")
    assert folders(stack) == before
