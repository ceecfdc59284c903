"""The portal API as a JupyterHub-managed service, through the real proxy."""

from __future__ import annotations

import httpx
import pytest
from support.stack import start_server, wait_until

pytestmark = pytest.mark.e2e
HTML = {"Accept": "text/html"}  # as a browser asks


def test_health_answers_without_login(stack):
    reply = httpx.get(f"{stack.api}/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "ok"
    assert body["ledger"] == "ok"
    assert body["backend"] == "local"


def test_openapi_document_lists_the_routes(stack):
    doc = httpx.get(f"{stack.api}/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/services/portal/api/v1/me",
        "/services/portal/api/v1/slices",
        "/services/portal/api/v1/health",
    } <= paths
    assert httpx.get(f"{stack.api}/docs").status_code == 200


def test_me_without_credentials_is_401_with_a_hint(stack):
    reply = httpx.get(f"{stack.api}/me")
    assert reply.status_code == 401
    assert "log in at /services/portal/login" in reply.json()["detail"]


def test_me_from_a_browser_without_login_redirects_to_login(stack):
    reply = httpx.get(f"{stack.api}/me", headers={"Accept": "text/html"})
    assert reply.status_code == 302
    assert reply.headers["location"].startswith("/services/portal/login?next=")


def test_me_with_a_hub_token(stack, alice_token):
    reply = httpx.get(f"{stack.api}/me", headers={"Authorization": f"token {alice_token}"})
    assert reply.status_code == 200, reply.text
    me = reply.json()
    assert me["name"] == "alice"
    assert me["groups"] == ["higgs"]
    assert me["auth"] == "token"
    assert me["roles"] == ["user"]
    # mps-25 is for the neutrino group only
    assert me["profiles"] == ["cpu", "mig-1g.18gb", "mig-3g.71gb", "gpu-1", "gpu-2"]


def test_a_forged_token_is_refused(stack):
    reply = httpx.get(f"{stack.api}/me", headers={"Authorization": "token not-a-token"})
    assert reply.status_code == 401
    assert "not valid" in reply.json()["detail"]


def test_slices_follow_groups_and_show_simulated_availability(stack, bob):
    from support.login import hub_token

    token = hub_token(bob, "bob")
    reply = httpx.get(f"{stack.api}/slices", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    slices = {s["name"]: s for s in reply.json()}
    assert set(slices) == {"cpu", "mig-1g.18gb", "mps-25", "gpu-1"}
    # simulated inventory: 2 whole H100, an H200 with 3g.71gb + 2g.35gb + 2x 1g.18gb
    assert slices["gpu-1"]["availability"]["capacity"] == 2
    assert slices["mig-1g.18gb"]["availability"]["capacity"] == 2
    assert slices["mps-25"]["availability"]["capacity"] == 8  # 4 shares of 25 % x 2 GPUs
    assert slices["mps-25"]["availability"]["note"] == "simulated GPUs"
    assert slices["cpu"]["availability"]["note"] == ""
    assert slices["mps-25"]["mps_pinned_memory_mib"] == 20480


def test_my_sessions_page_lists_sessions_with_reconnect(stack, alice, alice_token):
    auth = {"Authorization": f"token {alice_token}"}
    start_server(stack, "alice", auth, "cpu")
    try:
        home = alice.get("/hub/home").text
        assert 'href="/services/portal/sessions"' in home
        page = alice.get("/services/portal/sessions", headers=HTML)  # login follows the hub's
        assert page.status_code == 200 and "My sessions" in page.text, page.text[:500]
        assert '<a class="button" href="/user/alice/lab">Reconnect</a>' in page.text
        rows = httpx.get(f"{stack.api}/sessions", headers=auth).json()
        running = [r for r in rows if r["state"] == "running"]
        assert [r["url"] for r in running] == ["/user/alice/lab"]
        assert running[0]["running_s"] >= 0
        assert alice.get("/user/alice/lab").status_code == 200  # the link reconnects
    finally:
        httpx.delete(f"{stack.url}hub/api/users/alice/server", headers=auth, timeout=60)
    page = wait_until(
        lambda: (
            (text := alice.get("/services/portal/sessions?page=1", headers=HTML).text)
            and "Reconnect" not in text
            and text
        ),
        30,
        "the page without a running session",
        stack,
    )
    assert "stopped" in page
    assert alice.get("/services/portal/sessions?page=0").status_code == 422
