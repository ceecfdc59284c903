"""Connect or release, and idle culling that weighs what a session really does.

The real portal with jupyterhub-idle-culler as a hub service, short timeouts: a session
nobody connects to is released; an open browser tab polling an idle session does not keep
it; GPU activity reported for a session without any browser does.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import psutil
import pytest
from support.ledger_rows import audit_actions, first_event_times, latest_session
from support.login import hub_token, login
from support.stack import Stack, start_server, start_stack, wait_until

from gpuaf.ledger.models import SessionRecord

pytestmark = pytest.mark.e2e
CONNECT_S, IDLE_S = 8, 20


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory, e2e_ledger_url) -> Stack:
    stack = start_stack(
        tmp_path_factory.mktemp("idle"),
        ledger_url=e2e_ledger_url,
        sessions={
            "connect_timeout": f"{CONNECT_S}s",
            "idle_timeout": f"{IDLE_S}s",
            "poll_interval": "2s",
            "reconcile_interval": "2s",
            "environment": {"GPUAF_AGENT_INTERVAL": "1"},
        },
    )
    yield stack
    assert stack.interrupt() == 0, stack.log_tail()


def _session(stack: Stack, user: str) -> SessionRecord:
    record = latest_session(stack.settings_path, user)
    record.audits = audit_actions(stack.settings_path, user)
    return record


def _server(stack: Stack, user: str, auth: dict) -> dict | None:
    return httpx.get(f"{stack.url}hub/api/users/{user}", headers=auth).json()["servers"].get("")


def _token_of_session(stack: Stack, job_id: str) -> str:
    pid = json.loads((stack.data_dir / "local-jobs" / f"{job_id}.json").read_text())["pid"]
    return psutil.Process(pid).environ()["JUPYTERHUB_API_TOKEN"]


def test_a_session_nobody_connects_to_is_released(idle_stack):
    auth = {"Authorization": f"token {hub_token(login(idle_stack.url, 'alice'), 'alice')}"}
    start_server(idle_stack, "alice", auth, "cpu")
    wait_until(lambda: _server(idle_stack, "alice", auth) is None, 40, "release", idle_stack)
    record = _session(idle_stack, "alice")
    # released after the connect timeout, counted from the server's start (ledger times)
    times = first_event_times(idle_stack.settings_path, record.id)
    released = times.get("stopping") or times["stopped"]
    assert (released - times["running"]).total_seconds() >= CONNECT_S - 1, times
    assert (record.state, record.reason) == (
        "stopped",
        f"released: nobody connected within {CONNECT_S} s",
    )
    assert "session.released" in record.audits


def test_an_open_tab_on_an_idle_session_does_not_keep_it(idle_stack):
    browser = login(idle_stack.url, "bob")
    auth = {"Authorization": f"token {hub_token(browser, 'bob')}"}
    start_server(idle_stack, "bob", auth, "cpu")
    lab = browser.get("/user/bob/lab")  # the browser logs in to the server: it is claimed
    assert lab.status_code == 200 and "/user/bob/lab" in str(lab.url)
    up = time.monotonic()
    polls = 0
    # JupyterLab's open tab: it asks for kernels, sessions and files every few seconds
    while _server(idle_stack, "bob", auth) is not None:
        assert time.monotonic() - up < IDLE_S + 40, idle_stack.log_tail()
        for path in ("api/kernels", "api/sessions", "api/contents"):
            if browser.get(f"/user/bob/{path}").status_code == 200:
                polls += 1
        time.sleep(1)
    assert polls > 10
    assert time.monotonic() - up > CONNECT_S + 2  # claimed: not released at CONNECT_S
    record = _session(idle_stack, "bob")
    assert record.state == "stopped" and "released" not in record.reason
    assert "session.stop" in record.audits  # jupyterhub-idle-culler stopped it


def test_gpu_activity_keeps_a_session_with_no_browser_open(idle_stack):
    auth = {"Authorization": f"token {hub_token(login(idle_stack.url, 'carol'), 'carol')}"}
    start_server(idle_stack, "carol", auth, "cpu")
    record = _session(idle_stack, "carol")
    session_auth = {"Authorization": f"token {_token_of_session(idle_stack, record.job_id)}"}
    url = f"{idle_stack.api}/sessions/{record.id}/samples"

    def report(utilisation: float) -> None:
        sample = {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "device": "0",
            "memory_used_mib": 30_000,
            "memory_total_mib": 81_559,
            "utilisation_pct": utilisation,
            "power_w": 350.0,
            "energy_j": None,
        }
        reply = httpx.post(url, json={"samples": [sample]}, headers=session_auth)
        assert reply.status_code == 204, reply.text

    up = time.monotonic()
    while time.monotonic() - up < IDLE_S + 15:  # a training loop, nobody watching
        report(93.0)
        time.sleep(2)
    assert _server(idle_stack, "carol", auth) is not None, idle_stack.log_tail()
    assert _session(idle_stack, "carol").state == "running"
    quiet = time.monotonic()  # the GPU goes idle (below sessions.gpu_busy_utilisation)
    while _server(idle_stack, "carol", auth) is not None:
        assert time.monotonic() - quiet < IDLE_S + 40, idle_stack.log_tail()
        report(2.0)
        time.sleep(2)
    assert time.monotonic() - quiet >= IDLE_S - 5
    assert _session(idle_stack, "carol").state == "stopped"
