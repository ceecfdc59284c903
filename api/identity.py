"""Who is calling: a hub-issued token (header) or the portal's login cookie.

The token is checked with the hub (``HubOAuth.user_for_token``, cached) and must carry
access to this service; the user's groups are then read from the hub with the
service's own token, so every page and API call sees the same groups as the hub.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import httpx
from jupyterhub.services.auth import HubOAuth

from gpuaf.api.tokens import TokenRefused, TokenValidator
from gpuaf.errors import PublicError
from gpuaf.settings import Settings

COOKIE = "gpuaf-portal-token"
MODEL_TTL_S = 10.0


@dataclass(frozen=True)
class PortalUser:
    name: str
    groups: tuple[str, ...]
    admin: bool
    auth: Literal["cookie", "token", "iam"]
    scopes: frozenset[str] | None = None  # of an IAM token; None: a hub token or cookie


class NotAuthenticated(PublicError):
    status = 401


class HubIdentity:
    def __init__(
        self,
        hub_auth: HubOAuth,
        http: httpx.AsyncClient,
        tokens: TokenValidator | None = None,
        settings: Settings | None = None,
    ):
        self.hub_auth = hub_auth
        self.http = http
        self.tokens = tokens
        self.settings = settings
        self._models: dict[str, tuple[float, dict]] = {}

    @property
    def prefix(self) -> str:
        return self.hub_auth.base_url

    async def user_for(
        self, header: str | None, cookie: str | None, required_scope: str | None = "compute.read"
    ) -> PortalUser:
        token, via = _token_from_header(header), "token"
        if token and self.tokens is not None and token.count(".") == 2:
            return await self._iam_user(token, required_scope)
        if token is None:
            token, via = cookie, "cookie"
        if not token:
            raise NotAuthenticated(
                "Not logged in: send a JupyterHub API token as 'Authorization: token <token>', "
                f"or log in at {self.prefix}login"
            )
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            raise NotAuthenticated("The token is not valid (expired or revoked): log in again.")
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise PublicError("This token does not grant access to the portal.", status=403)
        full = await self._user_model(model["name"])
        return PortalUser(
            full["name"], tuple(sorted(full.get("groups", []))), bool(full.get("admin")), via
        )

    async def _iam_user(self, token: str, required_scope: str | None) -> PortalUser:
        """A caller with an IAM access token (WLCG JWT), validated by TokenValidator."""
        claims = await self.tokens.validate(token, required_scope=required_scope)
        known = self.settings.groups if self.settings else {}
        name = (
            str(claims.claims.get(self.settings.iam.username_claim) or claims.username)
            if self.settings
            else claims.username
        )
        groups = tuple(sorted(g for g in claims.groups if g in known))
        if not groups:
            raise TokenRefused(
                "group-missing",
                "The token's groups include none of the groups this portal serves.",
                status=403,
            )
        admin = any(known[g].role == "facility-admin" for g in groups)
        return PortalUser(name, groups, admin, "iam", claims.scopes)

    async def job_token(self, token: str, user: PortalUser) -> str:
        """An IAM token a session sends along for its notebook job: valid and the user's."""
        if self.tokens is None or token.count(".") != 2:
            raise PublicError("The token sent for the job is not an IAM access token.")
        try:
            claims = await self.tokens.validate(token)
        except TokenRefused as exc:
            raise PublicError(f"The token sent for the job was refused: {exc.message}") from exc
        claim = self.settings.iam.username_claim if self.settings else "preferred_username"
        if str(claims.claims.get(claim) or claims.username) != user.name:
            raise PublicError("The token sent for the job belongs to someone else.", status=403)
        return token

    async def _user_model(self, name: str) -> dict:
        cached = self._models.get(name)
        if cached and time.monotonic() - cached[0] < MODEL_TTL_S:
            return cached[1]
        reply = await self.http.get(
            f"{self.hub_auth.api_url}/users/{name}",
            headers={"Authorization": f"token {self.hub_auth.api_token}"},
        )
        reply.raise_for_status()
        model = reply.json()
        self._models[name] = (time.monotonic(), model)
        return model


def _token_from_header(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None
