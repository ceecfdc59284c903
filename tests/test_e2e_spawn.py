"""Booking a slice through the hub: validation of the choice, and the session life cycle."""

from __future__ import annotations

import re
import time

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session
from support.login import hub_token, xsrf_headers
from support.stack import start_server, wait_until

from gpuaf.ledger.models import SessionEvent, SessionRecord
from gpuaf.settings import load_settings

pytestmark = pytest.mark.e2e
ALICE_SLICES = "cpu, mig-1g.18gb, mig-3g.71gb, gpu-1, gpu-2"


def test_the_spawn_form_lists_what_the_user_may_book(stack, bob):
    page = bob.get("/hub/spawn")
    assert page.status_code == 200
    html = page.text
    radios = dict(
        re.findall(
            r'<input type="radio" name="profile" id="[^"]+" value="([^"]+)"'
            r"([^>]*)>",
            html,
        )
    )
    assert list(radios) == ["cpu", "mig-1g.18gb", "mig-3g.71gb", "mps-25", "gpu-1", "gpu-2"]
    for name in ("cpu", "mig-1g.18gb", "mps-25", "gpu-1"):
        assert "disabled" not in radios[name]
    for name in ("mig-3g.71gb", "gpu-2"):  # higgs only: shown, but not bookable
        assert "disabled" in radios[name]
    assert html.count("for higgs only") == 2
    assert "2 free · 0 waiting" in html  # gpu-1 on two simulated H100s
    assert "Simulated GPUs." in html


def test_a_forged_spawn_form_with_an_unknown_slice_is_a_400(stack, alice):
    reply = alice.post(
        "/hub/spawn", data={"profile": "h100-for-free", "_xsrf": xsrf_headers(alice)["X-XSRFToken"]}
    )
    assert reply.status_code == 400
    assert (
        "Unknown slice profile &#39;h100-for-free&#39;" in reply.text
        or "Unknown slice profile 'h100-for-free'" in reply.text
    )
    assert ALICE_SLICES in reply.text


def test_a_slice_of_another_group_is_refused_like_an_unknown_one(stack, bob):
    reply = bob.post(
        "/hub/spawn", data={"profile": "mig-3g.71gb", "_xsrf": xsrf_headers(bob)["X-XSRFToken"]}
    )
    assert reply.status_code == 400
    assert "cpu, mig-1g.18gb, mps-25, gpu-1" in reply.text


def test_the_rest_api_refuses_an_unknown_slice_with_400(stack, alice_token):
    reply = httpx.post(
        f"{stack.url}hub/api/users/alice/servers/",
        json={"profile": "../../etc"},
        headers={"Authorization": f"token {alice_token}"},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    assert ALICE_SLICES in reply.json()["message"]


def _session_rows(stack, user):
    engine = create_engine(load_settings(stack.settings_path).ledger_url)
    with Session(engine) as db:
        rows = list(db.scalars(select(SessionRecord).where(SessionRecord.user_name == user)))
        history = {
            r.id: [
                e.state
                for e in db.scalars(
                    select(SessionEvent)
                    .where(SessionEvent.session_id == r.id)
                    .order_by(SessionEvent.id)
                )
            ]
            for r in rows
        }
    engine.dispose()
    return rows, history


def test_session_life_cycle_through_the_rest_api(stack, alice_token):
    auth = {"Authorization": f"token {alice_token}"}
    start_server(stack, "alice", auth, "gpu-1")
    # reachable through the proxy with the user's token
    api = httpx.get(f"{stack.url}user/alice/api/status", headers=auth, timeout=10)
    assert api.status_code == 200
    rows, _ = _session_rows(stack, "alice")
    running = [r for r in rows if r.state == "running"]
    assert len(running) == 1, [(r.state, r.reason) for r in rows]
    job_id = running[0].job_id
    record = stack.data_dir / "local-jobs" / f"{job_id}.json"
    pid = __import__("json").loads(record.read_text())["pid"]
    env = psutil.Process(pid).environ()
    assert env["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    assert env["GPUAF_SIMULATED_GPUS"] == "1"
    assert env["GPUAF_PROFILE"] == "gpu-1"
    assert "GPUAF_SETTINGS" not in env  # nothing of the hub's environment leaks in
    # the port callback takes a port from the server's own token, and nothing else
    report = f"{stack.url}hub/api/batchspawner"
    server_auth = {"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}
    forged = httpx.post(
        report, json={"port": 9999, "cmd": ["touch", "/tmp/x"]}, headers=server_auth
    )
    assert forged.status_code == 400
    assert 'exactly {"port": <integer 1024-65535>}' in forged.json()["message"]
    assert httpx.post(report, json={"port": 9999}, headers=auth).status_code == 403
    # availability sees the booking
    slices = {s["name"]: s for s in httpx.get(f"{stack.api}/slices", headers=auth).json()}
    assert slices["gpu-1"]["availability"]["busy"] == 1
    assert slices["gpu-2"]["availability"]["free"] == 0  # one of two H100s is taken

    stop = httpx.delete(f"{stack.url}hub/api/users/alice/server", headers=auth, timeout=60)
    assert stop.status_code in (202, 204)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    rows, history = _session_rows(stack, "alice")
    mine = [r for r in rows if r.job_id == job_id]
    assert len(mine) == 1
    assert mine[0].state == "stopped"
    assert mine[0].gpu_ids in (["0"], ["1"])
    assert history[mine[0].id][:4] == ["requested", "queued", "starting", "running"]
    assert history[mine[0].id][-2:] == ["stopping", "stopped"]


def test_named_servers_share_the_quota_of_concurrent_slices(stack, bob):
    """bob's group allows one session at once: a second, named one is refused until he stops."""
    auth = {"Authorization": f"token {hub_token(bob, 'bob')}"}
    users = f"{stack.url}hub/api/users/bob"
    start_server(stack, "bob", auth, "cpu")
    try:
        second = httpx.post(f"{users}/servers/gpu", json={"profile": "gpu-1"}, headers=auth,
                            timeout=60)  # fmt: skip
        assert second.status_code == 403
        assert "Your quota allows 1 session(s) at once and you have 1" in second.json()["message"]
        assert "gpu" not in httpx.get(users, headers=auth).json()["servers"]
    finally:
        httpx.delete(f"{users}/server", headers=auth, timeout=60)
    wait_until(
        lambda: not httpx.get(users, headers=auth).json()["servers"], 60, "bob's stop", stack
    )
    named = httpx.post(f"{users}/servers/gpu", json={"profile": "gpu-1"}, headers=auth, timeout=60)
    assert named.status_code in (201, 202), named.text
    wait_until(
        lambda: httpx.get(users, headers=auth).json()["servers"].get("gpu", {}).get("ready"),
        60, "bob's named server", stack,
    )  # fmt: skip
    lab = httpx.get(f"{stack.url}user/bob/gpu/api/status", headers=auth, timeout=10)
    assert lab.status_code == 200
    [row] = [
        r for r in _session_rows(stack, "bob")[0] if r.server_name == "gpu" and r.state == "running"
    ]
    assert row.profile == "gpu-1"
    httpx.delete(f"{users}/servers/gpu", headers=auth, timeout=60)
    wait_until(
        lambda: not httpx.get(users, headers=auth).json()["servers"], 60, "the named stop", stack
    )
