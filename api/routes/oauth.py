"""Browser login to the portal through the hub's OAuth provider (code + PKCE).

The hub logs the user in with IAM; the portal then gets a hub token for that user
without a second prompt. The state cookie is HMAC-signed and bound to the state
parameter; redirects after login stay under the portal's own prefix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from gpuaf.api.deps import FacilityDep, IdentityDep
from gpuaf.api.identity import COOKIE, HubIdentity
from gpuaf.errors import PublicError

router = APIRouter(tags=["login"], include_in_schema=False)
STATE_COOKIE = "gpuaf-portal-oauth-state"
STATE_MAX_AGE_S = 600


def safe_next(next_url: str | None, prefix: str) -> str:
    """Only a path under our prefix: never another host, never a scheme-relative URL."""
    if (
        not next_url
        or not next_url.startswith(prefix)
        or next_url.startswith("//")
        or "\\" in next_url
        or any(ord(ch) < 32 for ch in next_url)
    ):
        return prefix
    return next_url


def _sign(key: str, payload: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    mac = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _unsign(key: str, value: str | None) -> dict | None:
    if not value or "." not in value:
        return None
    body, mac = value.rsplit(".", 1)
    good = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, good):
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(body))
    except ValueError:
        return None


@router.get("/login")
def login(identity: IdentityDep, next: str | None = None) -> RedirectResponse:
    hub_auth = identity.hub_auth
    verifier, challenge, method = hub_auth.generate_pkce_code_challenge()
    state = secrets.token_urlsafe(24)
    target = safe_next(next, identity.prefix)
    params = {
        "client_id": hub_auth.oauth_client_id,
        "redirect_uri": hub_auth.oauth_redirect_uri,
        "response_type": "code",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": method,
    }
    response = RedirectResponse(f"{hub_auth.oauth_authorization_url}?{urlencode(params)}", 302)
    response.set_cookie(
        STATE_COOKIE,
        _sign(hub_auth.api_token, {"s": state, "v": verifier, "n": target}),
        max_age=STATE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        path=identity.prefix,
    )
    return response


@router.get("/oauth_callback")
async def oauth_callback(
    request: Request, identity: IdentityDep, code: str = "", state: str = ""
) -> RedirectResponse:
    hub_auth = identity.hub_auth
    saved = _unsign(hub_auth.api_token, request.cookies.get(STATE_COOKIE))
    if not code or saved is None or not hmac.compare_digest(saved.get("s", ""), state):
        raise PublicError(
            "The login could not be verified (stale or forged state). "
            f"Start again at {identity.prefix}login",
            status=400,
        )
    token = await hub_auth.token_for_code(code, code_verifier=saved["v"], sync=False)
    response = RedirectResponse(safe_next(saved.get("n"), identity.prefix), 302)
    response.delete_cookie(STATE_COOKIE, path=identity.prefix)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        path=identity.prefix,
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/logout")
def logout(identity: IdentityDep) -> RedirectResponse:
    """End the hub's login; the hub then sends the browser to ``logout/done``."""
    response = RedirectResponse(identity.hub_auth.hub_prefix + "logout", 302)
    response.delete_cookie(COOKIE, path=identity.prefix)
    return response


@router.get("/logout/done")
async def logout_done(identity: IdentityDep, facility: FacilityDep) -> RedirectResponse:
    """Drop the portal's login, then end the provider's session (its end-session page)."""
    target = await _end_session_url(identity, facility.settings.iam.issuer)
    response = RedirectResponse(target or identity.hub_auth.hub_prefix + "login", 302)
    response.delete_cookie(COOKIE, path=identity.prefix)
    return response


async def _end_session_url(identity: HubIdentity, issuer: str) -> str | None:
    """The provider's end_session_endpoint from its discovery document (a setting, not input)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = await identity.http.get(url, timeout=5)
        reply.raise_for_status()
        endpoint = reply.json().get("end_session_endpoint")
    except (httpx.HTTPError, ValueError):
        return None
    return endpoint if isinstance(endpoint, str) and endpoint.startswith(issuer) else None
