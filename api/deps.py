"""Dependencies of the routes, as Annotated aliases."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import Depends, Request

from gpuaf.api.identity import COOKIE, HubIdentity, NotAuthenticated, PortalUser
from gpuaf.errors import PublicError
from gpuaf.facility import Facility


def get_facility(request: Request) -> Facility:
    return request.app.state.facility


def get_identity(request: Request) -> HubIdentity:
    return request.app.state.identity


async def json_body(request: Request) -> object:
    """The request's JSON body (None when empty); a 400 that says why when it is not JSON."""
    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PublicError(f"The request is not JSON: {exc}.", status=400) from exc


def client_address(request: Request) -> str:
    return getattr(request.state, "client", "") or (request.client.host if request.client else "")


async def get_current_user(request: Request) -> PortalUser:
    identity: HubIdentity = request.app.state.identity
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    try:
        return await identity.user_for(header, cookie)
    except PublicError as exc:
        if header or cookie:  # a credential was presented and refused: audit why
            facility: Facility = request.app.state.facility
            reason = getattr(exc, "reason", None) or (
                "not-authenticated" if isinstance(exc, NotAuthenticated) else "forbidden"
            )
            await asyncio.to_thread(
                facility.ledger.audit, "-", "token.refused", request.url.path,
                client_addr=client_address(request), reason=reason, status=exc.status,
            )  # fmt: skip
        raise


def require_role(*roles: str):
    """A dependency that lets through only users holding one of ``roles``."""

    async def check(user: CurrentUserDep, facility: FacilityDep) -> PortalUser:
        if not set(user_roles(facility, user)) & set(roles):
            raise PublicError(f"This needs the role {' or '.join(roles)}.", status=403)
        return user

    return check


def user_roles(facility: Facility, user: PortalUser) -> list[str]:
    groups = facility.settings.groups
    roles = {groups[g].role for g in user.groups if g in groups}
    if user.admin:
        roles.add("facility-admin")
    return sorted(roles)


FacilityDep = Annotated[Facility, Depends(get_facility)]
IdentityDep = Annotated[HubIdentity, Depends(get_identity)]
CurrentUserDep = Annotated[PortalUser, Depends(get_current_user)]
CurrentUser = CurrentUserDep
AdminUser = Annotated[PortalUser, Depends(require_role("facility-admin", "collaboration-admin"))]


def check_same_origin(request: Request, user: PortalUser) -> None:
    """A change made with the login cookie must come from the portal's own pages: the
    browser's Origin (or Referer) names this host. Token callers are not browsers."""
    if user.auth != "cookie":
        return
    from urllib.parse import urlsplit

    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not source or urlsplit(source).netloc != request.headers.get("host", ""):
        raise PublicError(
            "This change must be made from the portal's own page (the request came from "
            f"{urlsplit(source).netloc or 'an unknown page'}).",
            status=403,
        )


def visible_groups(facility: Facility, user: PortalUser) -> set[str] | None:
    """The groups an admin may see: None (all) for a facility admin, else the
    collaborations the user administers."""
    if "facility-admin" in user_roles(facility, user):
        return None
    groups = facility.settings.groups
    return {
        groups[g].collaboration or g
        for g in user.groups
        if g in groups and groups[g].role == "collaboration-admin"
    }
