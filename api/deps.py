"""Dependencies of the routes, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gpuaf.api.identity import COOKIE, HubIdentity, PortalUser
from gpuaf.facility import Facility


def get_facility(request: Request) -> Facility:
    return request.app.state.facility


def get_identity(request: Request) -> HubIdentity:
    return request.app.state.identity


async def get_current_user(request: Request) -> PortalUser:
    identity: HubIdentity = request.app.state.identity
    return await identity.user_for(
        request.headers.get("authorization"), request.cookies.get(COOKIE)
    )


FacilityDep = Annotated[Facility, Depends(get_facility)]
IdentityDep = Annotated[HubIdentity, Depends(get_identity)]
CurrentUser = Annotated[PortalUser, Depends(get_current_user)]
