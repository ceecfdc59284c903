"""IAM login for the hub: OIDC authorization code + PKCE through oauthenticator.

Endpoints come from the issuer's discovery document. Groups are read exactly from the
configured claims (``wlcg.groups`` entries lose their leading ``/``); a parent group
is never inferred from a child, and only groups the settings declare are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import List, Unicode

from gpuaf.errors import SettingsError
from gpuaf.facility import facility_for
from gpuaf.ledger.users import upsert_user
from gpuaf.networks import UntrustedNetwork, check_client
from gpuaf.settings import Settings


def discover(issuer: str, timeout: float = 10.0) -> dict[str, Any]:
    """Fetch the issuer's OIDC discovery document, with a clear error if it is unreachable."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        reply = httpx.get(url, timeout=timeout)
        reply.raise_for_status()
        doc = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SettingsError(
            f"iam.issuer: cannot read the discovery document at {url} ({exc})"
        ) from exc
    if doc.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise SettingsError(f"iam.issuer: {url} names issuer {doc.get('issuer')!r}, not {issuer!r}")
    return doc


def groups_from_claims(
    claims: Mapping[str, Any], claim_names: Iterable[str], known: Iterable[str]
) -> list[str]:
    """The declared groups found in the first present claim, each read exactly."""
    known = set(known)
    for name in claim_names:
        raw = claims.get(name)
        if raw is None:
            continue
        values = [raw] if isinstance(raw, str) else list(raw)
        found = [v[1:] if isinstance(v, str) and v.startswith("/") else v for v in values]
        return sorted({g for g in found if isinstance(g, str) and g in known})
    return []


class IAMAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator with IAM group handling, trusted networks and a login audit."""

    groups_claims = List(Unicode(), config=True, help="Claims read for groups, first found wins.")
    known_groups = List(Unicode(), config=True, help="Groups the portal declares.")
    settings_file = Unicode("", config=True, help="gpuaf settings (for the ledger).")

    def build_auth_state_dict(self, token_info, user_info):
        state = super().build_auth_state_dict(token_info, user_info)
        state["issued_at"] = time.time()
        state["expires_at"] = state["issued_at"] + float(token_info.get("expires_in") or 0)
        return state

    async def fresh_access_token(self, user) -> tuple[str, float]:
        """The user's IAM access token, refreshed first once half its lifetime has passed."""
        state = await user.get_auth_state() or {}
        if not state.get("access_token"):
            raise LookupError("no IAM token stored for this user: log in again")
        expires_at = state.get("expires_at", 0)
        lifetime = expires_at - state.get("issued_at", expires_at)
        if expires_at - time.time() > lifetime / 2:
            return state["access_token"], expires_at
        if not state.get("refresh_token"):
            raise LookupError("the IAM token expires and no refresh token was granted")
        params = self.build_refresh_token_request_params(state["refresh_token"])
        try:
            token_info = await self.get_token_info(None, params)
        except (web.HTTPError, HTTPClientError) as exc:
            raise LookupError(f"IAM refused to refresh the token ({exc}): log in again") from exc
        token_info.setdefault("refresh_token", state["refresh_token"])
        model = await self._token_to_auth_model(token_info)
        await user.save_auth_state(model["auth_state"])
        fresh = model["auth_state"]
        return fresh["access_token"], fresh["expires_at"]

    async def authenticate(self, handler, data=None):
        facility = facility_for(self.settings_file or None)
        client = handler.request.remote_ip or ""
        try:
            check_client(client, facility.settings.portal.trusted_networks)
        except UntrustedNetwork as exc:
            await asyncio.to_thread(
                facility.ledger.audit, "-", "login.refused", client_addr=client,
                reason="untrusted-network",
            )  # fmt: skip
            raise web.HTTPError(403, exc.message) from exc
        model = await super().authenticate(handler, data)
        if model is None:
            await asyncio.to_thread(
                facility.ledger.audit, "-", "login.refused", client_addr=client,
                reason="not-allowed",
            )  # fmt: skip
            return None
        groups = sorted(model.get("groups") or [])
        await asyncio.to_thread(upsert_user, facility.ledger, model["name"], groups)
        await asyncio.to_thread(
            facility.ledger.audit, model["name"], "login", client_addr=client, groups=groups
        )
        return model

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        claims = auth_state.get(self.user_auth_state_key) or {}
        return set(groups_from_claims(claims, self.groups_claims, self.known_groups))


def configure_authenticator(
    c: Any, settings: Settings, callback_url: str, settings_path: str
) -> None:
    iam = settings.iam
    doc = discover(iam.issuer)
    c.JupyterHub.authenticator_class = IAMAuthenticator
    a = c.IAMAuthenticator
    a.client_id = iam.client_id
    a.client_secret = iam.client_secret.get_secret_value()
    a.authorize_url = doc["authorization_endpoint"]
    a.token_url = doc["token_endpoint"]
    a.userdata_from_id_token = True
    a.oauth_callback_url = callback_url
    a.scope = list(iam.scopes)
    a.username_claim = iam.username_claim
    a.login_service = iam.login_service
    a.enable_pkce = True
    a.enable_auth_state = True  # IAM tokens for the sessions (BEARER_TOKEN_FILE)
    a.refresh_pre_spawn = False
    a.manage_groups = True
    a.groups_claims = list(iam.groups_claims)
    a.known_groups = list(settings.groups)
    a.settings_file = settings_path
    a.allowed_groups = set(settings.groups)
    a.admin_groups = {n for n, g in settings.groups.items() if g.role == "facility-admin"}
    # after the hub's logout, the portal drops its login too and sends the browser on to
    # the provider's end-session page (see gpuaf.api.routes.oauth.logout_done)
    a.logout_redirect_url = (
        f"{settings.portal.url.rstrip('/')}/services/{settings.portal.service_name}/logout/done"
    )
