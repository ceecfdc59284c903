"""IAM login for the hub: OIDC authorization code + PKCE through oauthenticator.

Endpoints come from the issuer's discovery document. Groups are read exactly from the
configured claims (``wlcg.groups`` entries lose their leading ``/``); a parent group
is never inferred from a child, and only groups the settings declare are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from oauthenticator.generic import GenericOAuthenticator
from traitlets import List, Unicode

from gpuaf.errors import SettingsError
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
    """GenericOAuthenticator with IAM group handling."""

    groups_claims = List(Unicode(), config=True, help="Claims read for groups, first found wins.")
    known_groups = List(Unicode(), config=True, help="Groups the portal declares.")

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        claims = auth_state.get(self.user_auth_state_key) or {}
        return set(groups_from_claims(claims, self.groups_claims, self.known_groups))


def configure_authenticator(c: Any, settings: Settings, callback_url: str) -> None:
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
    a.manage_groups = True
    a.groups_claims = list(iam.groups_claims)
    a.known_groups = list(settings.groups)
    a.allowed_groups = set(settings.groups)
    a.admin_groups = {n for n, g in settings.groups.items() if g.role == "facility-admin"}
    if doc.get("end_session_endpoint"):
        a.logout_redirect_url = doc["end_session_endpoint"]
