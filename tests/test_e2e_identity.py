"""Identity across hub and portal: quotas in /me, the audit log and who may read it,
XSRF, redirects that stay on our host, and logout."""

from __future__ import annotations

import httpx
import pytest
from support.login import hub_token, login

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tokens(stack, alice, bob):
    out = {"alice": hub_token(alice, "alice"), "bob": hub_token(bob, "bob")}
    for name in ("dana", "erin"):
        client = login(stack.url, name)
        out[name] = hub_token(client, name)
        client.close()
    return out


def _get(stack, path, token, **params):
    return httpx.get(
        f"{stack.api}{path}", params=params, headers={"Authorization": f"token {token}"}, timeout=30
    )


def test_me_shows_roles_and_quota(stack, tokens):
    alice = _get(stack, "/me", tokens["alice"]).json()
    assert alice["quota"]["concurrent_slices"] == 2
    assert alice["quota"]["gpu_hours_per_month"] == 200
    assert alice["quota"]["gpu_hours_left"] <= 200
    erin = _get(stack, "/me", tokens["erin"]).json()
    assert erin["roles"] == ["facility-admin"] and erin["admin"] is True
    assert erin["quota"]["concurrent_slices"] is None  # no limit
    assert _get(stack, "/me", tokens["dana"]).json()["roles"] == ["collaboration-admin", "user"]


def test_the_audit_log_is_for_admins_only(stack, tokens):
    reply = _get(stack, "/audit", tokens["alice"])
    assert reply.status_code == 403
    assert "collaboration-admin" in reply.json()["detail"]


def test_a_facility_admin_sees_every_login(stack, tokens):
    page = _get(stack, "/audit", tokens["erin"], action="login", limit=500).json()
    actors = {e["actor"] for e in page["items"] if e["action"] == "login"}
    assert {"alice", "bob", "dana", "erin"} <= actors
    assert all(e["client_addr"] == "127.0.0.1" for e in page["items"] if e["action"] == "login")


def test_a_collaboration_admin_sees_only_their_collaboration(stack, tokens):
    page = _get(stack, "/audit", tokens["dana"], action="login", limit=500).json()
    actors = {e["actor"] for e in page["items"]}
    assert "alice" in actors and "dana" in actors  # higgs members
    assert "bob" not in actors and "erin" not in actors


def test_a_refused_token_is_audited_with_its_reason(stack, tokens):
    assert _get(stack, "/me", "forged-token").status_code == 401
    page = _get(stack, "/audit", tokens["erin"], action="token.refused").json()
    assert page["items"][0]["detail"]["reason"] == "not-authenticated"
    assert page["items"][0]["target"] == "/services/portal/api/v1/me"


def test_bad_audit_queries_are_422_not_500(stack, tokens):
    assert _get(stack, "/audit", tokens["erin"], limit=0).status_code == 422
    assert _get(stack, "/audit", tokens["erin"], action="DROP TABLE").status_code == 422
    assert _get(stack, "/audit", tokens["erin"], since="yesterday").status_code == 422


def test_state_changing_forms_need_the_xsrf_token(stack, alice):
    reply = alice.post("/hub/spawn", data={"profile": "cpu"})
    assert reply.status_code == 403
    assert "xsrf" in reply.text.lower()


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "http://127.0.0.1.evil.example/",
    ],
)
def test_a_next_url_to_another_host_is_refused(stack, target):
    client = login(stack.url, "carol", next_url=target, check=False)
    try:
        assert client.final_url.host == "127.0.0.1", client.final_url  # never left our host
        assert client.get("/hub/home").status_code == 200  # and the login itself worked
        again = client.get("/hub/login", params={"next": target})
        assert again.url.host == "127.0.0.1", again.url
    finally:
        client.close()
    portal = httpx.get(
        f"{stack.url}services/portal/login", params={"next": target}, follow_redirects=False
    )
    state = portal.cookies.get("gpuaf-portal-oauth-state")
    assert (
        state
        and "evil"
        not in __import__("base64").urlsafe_b64decode(state.rsplit(".", 1)[0] + "==").decode()
    )


def test_portal_login_shares_the_hub_login_and_logout_ends_both(stack):
    client = login(stack.url, "alice")
    try:
        assert client.get("/services/portal/login").status_code == 200  # no second prompt
        me = client.get("/services/portal/api/v1/me")
        assert me.status_code == 200 and me.json()["auth"] == "cookie"
        client.get("/services/portal/logout")
        assert (
            client.get(
                "/services/portal/api/v1/me", headers={"Accept": "application/json"}
            ).status_code
            == 401
        )
        assert "/hub/login" in str(client.get("/hub/home").url)  # the hub's session ended too
    finally:
        client.close()


def test_a_booking_over_quota_is_a_403_that_says_which_quota(tmp_path):
    from support.login import xsrf_headers
    from support.stack import start_stack

    stack = start_stack(
        tmp_path, simulate=None, groups={"neutrino": {"quota": {"concurrent_slices": 0}}}
    )
    try:
        client = login(stack.url, "bob")
        token = hub_token(client, "bob")
        api = httpx.post(
            f"{stack.url}hub/api/users/bob/server",
            json={"profile": "cpu"},
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert api.status_code == 403
        assert "Your quota allows 0 session(s) at once" in api.json()["message"]
        form = client.post(
            "/hub/spawn", data={"profile": "cpu", "_xsrf": xsrf_headers(client)["X-XSRFToken"]}
        )
        assert form.status_code == 403 and "Your quota allows 0 session(s)" in form.text
        client.close()
        assert not list((stack.data_dir / "local-jobs").glob("*.json"))  # nothing booked
    finally:
        assert stack.interrupt() == 0


def test_outside_the_trusted_networks_login_and_api_are_refused(tmp_path):
    from support.stack import start_stack

    stack = start_stack(tmp_path, simulate=None, portal={"trusted_networks": ["192.0.2.0/24"]})
    try:
        assert httpx.get(f"{stack.api}/health").status_code == 200  # monitoring still works
        api = httpx.get(f"{stack.api}/me")
        assert api.status_code == 403
        assert "Access from 127.0.0.1 is not allowed" in api.json()["detail"]
        client = login(stack.url, "alice", check=False)
        assert client.final_url.path == "/hub/oauth_callback"
        assert client.final_reply.status_code == 403
        assert "only from the facility&#39;s trusted networks" in client.final_reply.text
        assert client.get("/hub/home", follow_redirects=False).status_code == 302  # not in
        client.close()
    finally:
        assert stack.interrupt() == 0


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged(header: dict, payload: dict, signature: bytes = b"") -> str:
    import json

    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    )


def _issuer(stack) -> str:
    import yaml

    return yaml.safe_load(stack.settings_path.read_text())["iam"]["issuer"]


def test_iam_tokens_refused_at_the_api_with_the_reason_audited(stack, tokens):
    import time

    issuer = _issuer(stack)
    claims = {
        "iss": issuer,
        "sub": "alice",
        "aud": "gpuaf",
        "exp": time.time() + 600,
        "scope": "compute.read",
        "groups": ["higgs"],
    }
    cases = {
        "alg-not-allowed": _forged({"alg": "none", "kid": "k"}, claims),
        "kid-missing": _forged({"alg": "RS256"}, claims, b"x" * 256),
        "issuer-not-trusted": _forged(
            {"alg": "RS256", "kid": "k"}, {**claims, "iss": "https://evil.example"}, b"x" * 256
        ),
    }
    for reason, token in cases.items():
        reply = httpx.get(f"{stack.api}/me", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401, (reason, reply.text)
        assert f'error_description="{reason}"' in reply.headers["www-authenticate"]
        assert token not in reply.text
    # a real token of the provider, but without compute.read
    real = httpx.post(
        f"{issuer}/token",
        data={"grant_type": "client_credentials", "scope": "compute.create"},
        auth=("gpuaf-portal", "demo-client-secret"),
        timeout=10,
    )
    assert real.status_code == 200, real.text
    reply = httpx.get(
        f"{stack.api}/me", headers={"Authorization": f"Bearer {real.json()['access_token']}"}
    )
    assert reply.status_code == 403 and "compute.read" in reply.json()["detail"]
    audit = _get(stack, "/audit", tokens["erin"], action="token.refused", limit=20).json()
    reasons = [e["detail"]["reason"] for e in audit["items"]]
    for reason in ("scope-missing", "issuer-not-trusted", "kid-missing", "alg-not-allowed"):
        assert reason in reasons
