"""The ledger follows the truth: a session whose server dies is marked so within one
reconcile round, and its user reads why in "my sessions"."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest
from support.login import hub_token, login
from support.stack import start_stack, wait_until

pytestmark = pytest.mark.e2e


def test_a_killed_session_is_marked_and_explained(tmp_path):
    stack = start_stack(tmp_path, simulate=None, sessions={"reconcile_interval": "2s"})
    try:
        client = login(stack.url, "alice")
        auth = {"Authorization": f"token {hub_token(client, 'alice')}"}
        client.close()
        assert httpx.post(
            f"{stack.url}hub/api/users/alice/server",
            json={"profile": "cpu"},
            headers=auth,
            timeout=60,
        ).status_code in (201, 202)

        def mine():
            return httpx.get(f"{stack.api}/sessions", headers=auth).json()

        running = wait_until(
            lambda: [s for s in mine() if s["state"] == "running"], 60, "the session to run", stack
        )[0]
        assert running["profile"] == "cpu" and running["node"] == "127.0.0.1"
        # the session agent, started in the job with the session's own token, reported once
        noted = wait_until(
            lambda: [s for s in mine() if s["gpu_note"]], 30, "the agent's note", stack
        )
        assert noted[0]["gpu_note"] == (
            "No GPU assigned to this session (CUDA_VISIBLE_DEVICES is empty)."
        )
        assert noted[0]["gpu_hours"] == 0 and noted[0]["energy_wh"] in (0, None)
        assert [e["state"] for e in running["history"]][:4] == [
            "requested",
            "queued",
            "starting",
            "running",
        ]
        record = stack.data_dir / "local-jobs" / f"{running['job_id']}.json"
        os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)
        ended = wait_until(
            lambda: [
                s
                for s in mine()
                if s["id"] == running["id"] and s["state"] in ("failed", "stopped", "lost")
            ],
            20,
            "the ledger to notice",
            stack,
        )[0]
        assert "exited with code -9" in ended["reason"]
        # nothing doubled: one record, one event per state
        states = [e["state"] for e in ended["history"]]
        assert len(states) == len(set(states))
        assert len(mine()) == 1
    finally:
        assert stack.interrupt() == 0, stack.log_tail()
