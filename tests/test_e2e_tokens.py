"""IAM tokens end to end: a session holds a fresh access token in $BEARER_TOKEN_FILE,
the API accepts it as a WLCG bearer token, and it is refreshed before it expires."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.login import hub_token, login
from support.stack import start_server, start_stack

pytestmark = pytest.mark.e2e
TTL_S = 30  # the provider's access-token lifetime in this test


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _server_env(user: str, data_dir: Path) -> dict:
    for proc in psutil.process_iter(["cmdline"]):
        try:
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (
            env.get("JUPYTERHUB_USER") == user
            and "jupyterhub-singleuser" in cmdline
            and str(data_dir) in cmdline
        ):
            return env
    raise AssertionError(f"no server of {user}")


def test_the_session_token_file_is_valid_and_kept_fresh(tmp_path):
    stack = start_stack(tmp_path, simulate=None, env={"IDP_JWT_TTL": str(TTL_S)})
    try:
        client = login(stack.url, "alice")
        auth = {"Authorization": f"token {hub_token(client, 'alice')}"}
        client.close()
        start_server(stack, "alice", auth, "cpu")
        path = Path(_server_env("alice", stack.data_dir)["BEARER_TOKEN_FILE"])
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        first = path.read_text().strip()
        claims = _claims(first)
        assert claims["aud"] == "gpuaf" and claims["preferred_username"] == "alice"
        assert "compute.read" in claims["scope"].split()

        # the token works as a WLCG bearer token on the portal API
        me = httpx.get(f"{stack.api}/me", headers={"Authorization": f"Bearer {first}"})
        assert me.status_code == 200, me.text
        assert me.json()["auth"] == "iam" and me.json()["groups"] == ["higgs"]

        # it is replaced before it expires
        while path.read_text().strip() == first:
            assert time.time() < claims["exp"], "the token expired before it was refreshed"
            time.sleep(0.5)
        second = path.read_text().strip()
        assert _claims(second)["exp"] > claims["exp"]
        assert (
            httpx.get(f"{stack.api}/me", headers={"Authorization": f"Bearer {second}"}).status_code
            == 200
        )
        # and nowhere in the logs
        logs = "".join(
            p.read_text(errors="replace") for p in (stack.data_dir / "logs").glob("*.log")
        )
        assert first not in logs and second not in logs
    finally:
        assert stack.interrupt() == 0, stack.log_tail()
