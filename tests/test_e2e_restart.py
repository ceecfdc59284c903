"""kill -9 of the hub or the portal API in the middle of a spawn, then a restart.

Nothing lost (every session keeps its record), nothing doubled (one session and one job per
booking), a running session stays reachable, and the ledger is right within one poll.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest
from support.ledger_rows import sessions_with_history
from support.login import hub_token, login
from support.parts import Parts, start_parts
from support.postgres import create_database
from support.stack import wait_until

from gpuaf.facility import Facility
from gpuaf.ledger.models import SessionRecord
from gpuaf.settings import load_settings

pytestmark = pytest.mark.e2e
H100 = "1\N{MULTIPLICATION SIGN} H100"  # the profile's display name
GONE = ("cancelled", "unknown")
FINAL = ("stopped", "failed", "lost")  # Slurm forgets a cancelled job after MinJobAge


SMALL = {"cpus": 1, "memory": "512M", "walltime": "1h"}
SLURM_PROFILES = [  # the scratch Slurm node: 2 fake GPUs, 8 CPUs, 8000 MiB
    {"name": "gpu-1", "display_name": H100, "kind": "gpu", "gpus": 1, **SMALL},
    {"name": "gpu-2", "display_name": "2 GPUs", "kind": "gpu", "gpus": 2, **SMALL},
]


@pytest.fixture(scope="module", params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def parts(request, tmp_path_factory) -> Parts:
    sessions = {"reconcile_interval": "2s", "poll_interval": "3s", "start_timeout": "30s"}
    changes: dict = {}
    if request.param == "slurm":
        slurm = request.getfixturevalue("slurm")
        venv_bin = str(Path(sys.executable).parent)
        sessions |= {
            "singleuser_cmd": ["jupyterhub-singleuser", "--allow-root"],
            "environment": {"PATH": f"{venv_bin}:/usr/bin:/bin"},
        }
        changes = {
            "simulate": None,
            "backend": {
                "kind": "slurm",
                "slurm": {**slurm.backend_settings()["slurm"], "conf": str(slurm.conf)},
            },
            "profiles": SLURM_PROFILES,
        }
    ledger_url = None  # each backend's portal gets a ledger of its own
    if request.config.getoption("--ledger") == "postgresql":
        ledger_url = create_database(request.getfixturevalue("postgres_server"))
    running = start_parts(
        tmp_path_factory.mktemp(f"restart-{request.param}"),
        ledger_url=ledger_url,
        sessions=sessions,
        **changes,
    )
    running.kind = request.param
    yield running
    running.stop()


def _rows(parts: Parts, user: str) -> list[tuple[SessionRecord, list[str]]]:
    return sessions_with_history(parts.settings_path, user)


def _job_states(parts: Parts, jobs: list[str]) -> dict[str, str]:
    facility = Facility.from_settings(load_settings(parts.settings_path))
    statuses = asyncio.run(facility.backend.status(jobs))
    return {job: statuses[job].state.value for job in jobs}


def _until(predicate, what: str, parts: Parts, timeout: float = 60):
    return wait_until(predicate, timeout, what, parts)


class _Progress(threading.Thread):
    """Reads the hub's progress stream of a spawn, as the progress page does."""

    def __init__(self, url: str, auth: dict):
        super().__init__(daemon=True)
        self.url, self.auth, self.messages = url, auth, []

    def run(self) -> None:
        with httpx.stream("GET", self.url, headers=self.auth, timeout=120) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    self.messages.append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        return


def _follow_progress(url: str, auth: dict) -> _Progress:
    follower = _Progress(url, auth)
    follower.start()
    return follower


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _server(parts: Parts, user: str, name: str, auth: dict) -> dict | None:
    return httpx.get(f"{parts.url}hub/api/users/{user}", headers=auth).json()["servers"].get(name)


def test_kill_9_of_hub_and_api_mid_spawn_loses_nothing_and_doubles_nothing(parts):
    alice = {"Authorization": f"token {hub_token(login(parts.url, 'alice'), 'alice')}"}
    browser = login(parts.url, "carol")
    carol = {"Authorization": f"token {hub_token(browser, 'carol')}"}
    hub = f"{parts.url}hub/api/users"
    # alice holds both simulated H100s; carol's booking of one waits in the queue
    assert httpx.post(
        f"{hub}/alice/server", json={"profile": "gpu-2"}, headers=alice, timeout=60
    ).is_success
    _until(lambda: (_server(parts, "alice", "", alice) or {}).get("ready"), "alice up", parts)
    [(alice_session, _)] = _rows(parts, "alice")
    post = httpx.post(
        f"{hub}/carol/servers/train", json={"profile": "gpu-1"}, headers=carol, timeout=60
    )
    assert post.status_code in (201, 202), post.text
    queued = _until(
        lambda: [r for r, _ in _rows(parts, "carol") if r.state == "queued"], "queued", parts
    )
    first_job = queued[0].job_id

    # -- kill -9 of the hub while carol's spawn waits ------------------------------------
    api, culler = parts.api_process(), parts.culler_process()
    assert api is not None and culler is not None
    parts.kill_hub()
    _until(lambda: _gone(api), "the portal API's end with its hub", parts, 15)
    _until(lambda: _gone(culler), "the idle culler's end with its hub", parts, 15)
    parts.start_hub()

    def carol_failed():
        rows = _rows(parts, "carol")
        return rows if rows[0][0].state == "failed" else None

    [(first, history)] = _until(carol_failed, "the interrupted start ending", parts)
    assert "hub restarted while this session was starting" in first.reason
    assert history == ["requested", "queued", "stopping", "failed"]
    assert _job_states(parts, [first_job])[first_job] in GONE  # no slice held
    assert _server(parts, "carol", "train", carol) is None
    # alice's running session: reachable through the new proxy, its record unchanged
    status = httpx.get(f"{parts.url}user/alice/api/status", headers=alice, timeout=10)
    assert status.status_code == 200, parts.log_tail()
    [(record, history)] = _rows(parts, "alice")
    assert (record.id, record.state, record.job_id) == (
        alice_session.id,
        "running",
        alice_session.job_id,
    )
    assert history == ["requested", "queued", "starting", "running"]
    assert "replacing the proxy an earlier hub left running" in parts.logs[-1].read_text()

    # -- kill -9 of the portal API while carol's new spawn waits --------------------------
    post = httpx.post(
        f"{hub}/carol/servers/train", json={"profile": "gpu-1"}, headers=carol, timeout=60
    )
    assert post.status_code in (201, 202), post.text
    progress = _follow_progress(f"{hub}/carol/servers/train/progress", carol)
    _until(
        lambda: len(_rows(parts, "carol")) == 2 and _rows(parts, "carol")[1][0].job_id, "", parts
    )
    api = parts.api_process()
    api.kill()
    _until(lambda: _gone(api), "the API's end", parts, 10)
    stop = httpx.delete(f"{hub}/alice/server", headers=alice, timeout=60)
    assert stop.status_code in (202, 204)
    _until(lambda: (_server(parts, "carol", "train", carol) or {}).get("ready"), "carol up", parts)
    lab = httpx.get(f"{parts.url}user/carol/train/api/status", headers=carol, timeout=10)
    assert lab.status_code == 200
    progress.join(timeout=30)
    messages = progress.messages
    assert any(m.startswith(f"Booking a {H100} slice") for m in messages), messages
    assert f"Queued: position 1 among jobs waiting for {H100}" in "\n".join(messages)
    matched = {
        "local": r"Matched to node 127\.0\.0\.1, GPUs: [01] \(simulated\)",
        "slurm": r"Matched to node \S+, GPUs: [01]",
    }[parts.kind]
    assert any(re.fullmatch(matched, m) for m in messages), messages
    assert "Server up; connecting" in messages
    # the hub starts its service again; the ledger is right within a round of it
    _until(lambda: parts.api_process() not in (None, api), "the API's restart", parts, 60)

    def carol_running():
        rows = _rows(parts, "carol")
        return rows if rows[1][0].state == "running" else None

    rows = _until(carol_running, "carol's session recorded running", parts)
    assert [r.state for r, _ in rows] == ["failed", "running"]
    assert rows[1][1] == ["requested", "queued", "starting", "running"]
    assert [r.state for r, _ in _rows(parts, "alice")] == ["stopped"]
    live = _job_states(parts, [r.job_id for r, _ in rows])
    states = list(live.values())  # one job per booking, one alive
    assert states[0] in GONE and states[1] == "running", states
    if parts.kind != "local":  # a Slurm job cannot be made to vanish without a trace here
        httpx.delete(f"{hub}/carol/servers/train", headers=carol, timeout=60)
        _until(lambda: _server(parts, "carol", "train", carol) is None, "carol's stop", parts)
        return

    # -- the batch system forgets carol's running job: lost, and she is told -------------
    record = parts.data_dir / "local-jobs" / f"{rows[1][0].job_id}.json"
    pid = json.loads(record.read_text())["pid"]
    record.unlink()
    try:
        _until(lambda: _rows(parts, "carol")[1][0].state == "lost", "lost", parts, 30)
    finally:
        psutil.Process(pid).kill()
    lost = _rows(parts, "carol")[1][0]
    assert lost.reason == "This machine has no record of the session."
    _until(lambda: _server(parts, "carol", "train", carol) is None, "the server's end", parts)
    home = browser.get("/hub/home").text
    assert "Your session train on gpu-1 was lost" in home
    assert "This machine has no record of the session." in home
    assert "Your session train on gpu-1 failed" in home  # the interrupted start, too


def test_a_start_that_outlives_the_start_timeout_ends_cleanly(parts):
    alice = {"Authorization": f"token {hub_token(login(parts.url, 'alice'), 'alice')}"}
    carol = {"Authorization": f"token {hub_token(login(parts.url, 'carol'), 'carol')}"}
    hub = f"{parts.url}hub/api/users"
    booked = httpx.post(f"{hub}/alice/server", json={"profile": "gpu-2"}, headers=alice, timeout=60)
    assert booked.is_success, booked.text
    _until(lambda: (_server(parts, "alice", "", alice) or {}).get("ready"), "alice up", parts)
    try:
        post = httpx.post(f"{hub}/carol/servers/late", json={"profile": "gpu-1"}, headers=carol,
                          timeout=60)  # fmt: skip
        assert post.status_code in (201, 202), post.text
        progress = _follow_progress(f"{hub}/carol/servers/late/progress", carol)
        progress.join(timeout=90)
        assert any(m.startswith("Queued: position 1") for m in progress.messages)
        assert _server(parts, "carol", "late", carol) is None

        def ended():
            record = _rows(parts, "carol")[-1][0]
            return record if record.server_name == "late" and record.state == "failed" else None

        record = _until(ended, "the timed-out start recorded", parts, 30)
        assert record.reason == (
            "The session did not start within 30 s; its job was removed so that it does not "
            "hold a place in the queue or a slice."
        )
        assert _job_states(parts, [record.job_id])[record.job_id] in GONE

        # carol gives up on a queued start herself: stopped, not failed, and no job left
        post = httpx.post(f"{hub}/carol/servers/late", json={"profile": "gpu-1"}, headers=carol,
                          timeout=60)  # fmt: skip
        assert post.status_code in (201, 202), post.text  # the hub answers 201 at times
        queued = _until(
            lambda: (r := _rows(parts, "carol")[-1][0]).state == "queued" and r.id != record.id
            and r, "the second start queued", parts,
        )  # fmt: skip
        httpx.delete(f"{hub}/carol/servers/late", headers=carol, timeout=60)
        _until(lambda: _server(parts, "carol", "late", carol) is None, "carol's stop", parts)
        given_up = _until(
            lambda: (r := _rows(parts, "carol")[-1][0]).state in FINAL and r, "the end", parts
        )
        assert (given_up.id, given_up.state) == (queued.id, "stopped")
        assert given_up.reason == "stopped before it started; its job was removed"
        assert _job_states(parts, [given_up.job_id])[given_up.job_id] in GONE
    finally:
        httpx.delete(f"{hub}/alice/server", headers=alice, timeout=60)
        _until(lambda: _server(parts, "alice", "", alice) is None, "alice's stop", parts)
