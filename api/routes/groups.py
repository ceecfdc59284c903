"""Groups for their admins: quota and allowed slices (view and edit, validated, audited),
members and this month's use. A collaboration admin sees and edits their collaboration's
group(s); a facility admin every group."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import select

from gpuaf import group_edits
from gpuaf.api.deps import (
    AdminUser,
    FacilityDep,
    IdentityDep,
    check_same_origin,
    client_address,
    visible_groups,
)
from gpuaf.api.routes.pages import common
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.models import GroupSetting, User
from gpuaf.ledger.usage import usage_report
from gpuaf.policy import month_start
from gpuaf.templates import render

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["admin"])
GroupName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@/-]{0,254}$")]


class GroupOut(BaseModel):
    name: str
    description: str
    role: str
    concurrent_slices: int | None
    gpu_hours_per_month: float | None
    profiles: list[str]  # the slices its members may book
    members: int
    gpu_hours_this_month: float
    edited_by: str | None  # None: as in the settings file
    edited_at: dt.datetime | None


class GroupIn(BaseModel):
    concurrent_slices: int | None = None
    gpu_hours_per_month: float | None = None
    profiles: list[str] = []


def groups_of(facility: Facility, user) -> list[GroupOut]:
    scope = visible_groups(facility, user)
    settings = facility.settings
    names = sorted(g for g in settings.groups if scope is None or g in scope)
    now = dt.datetime.now(dt.UTC)
    with facility.ledger.session() as db:
        users = list(db.scalars(select(User)))
        edits = {r.name: r for r in db.scalars(select(GroupSetting))}
        used = usage_report(db, month_start(now), now, groups=names, now=now).by_group
    out = []
    for name in names:
        g = settings.groups[name]
        edit = edits.get(name)
        out.append(GroupOut(
            name=name, description=g.description, role=g.role,
            concurrent_slices=g.quota.concurrent_slices,
            gpu_hours_per_month=g.quota.gpu_hours_per_month,
            profiles=group_edits.allowed_profiles(settings, name),
            members=sum(1 for u in users if name in (u.groups or [])),
            gpu_hours_this_month=round(used[name].gpu_hours, 2) if name in used else 0.0,
            edited_by=edit.updated_by if edit else None,
            edited_at=edit.updated_at if edit else None,
        ))  # fmt: skip
    return out


async def edit_group(request: Request, facility: Facility, user, name: str, form: dict) -> None:
    check_same_origin(request, user)
    scope = visible_groups(facility, user)
    if scope is not None and name not in scope:
        mine = ", ".join(sorted(scope)) or "none"
        raise PublicError(f"You may edit the groups {mine}; not {name}.", status=403)
    edit = group_edits.check(facility.base_settings, name, form)
    settings = facility.settings  # what the group has now: the file's, or an earlier edit
    quota = settings.groups[name].quota
    before = {
        "concurrent_slices": quota.concurrent_slices,
        "gpu_hours_per_month": quota.gpu_hours_per_month,
        "profiles": group_edits.allowed_profiles(settings, name),
    }
    await asyncio.to_thread(group_edits.save, facility.ledger, name, edit, user.name)
    facility.forget_settings()
    await asyncio.to_thread(
        facility.ledger.audit, user.name, "group.edit", name, client_addr=client_address(request),
        before=before,
        after={"concurrent_slices": edit.concurrent_slices,
               "gpu_hours_per_month": edit.gpu_hours_per_month, "profiles": list(edit.profiles)},
    )  # fmt: skip


@api_router.get("/admin/groups", response_model=list[GroupOut])
async def groups_api(user: AdminUser, facility: FacilityDep) -> list[GroupOut]:
    """The groups an admin may see, with quota, allowed slices, members, this month's use."""
    return await asyncio.to_thread(groups_of, facility, user)


@api_router.put("/admin/groups/{name}", response_model=GroupOut)
async def group_put(
    request: Request, name: GroupName, body: GroupIn, user: AdminUser, facility: FacilityDep
) -> GroupOut:
    """Replace a group's quota and allowed slices (null: no limit)."""

    def text(value: float | None) -> list[str]:
        return ["" if value is None else str(value)]

    form = {
        "concurrent_slices": text(body.concurrent_slices),
        "gpu_hours_per_month": text(body.gpu_hours_per_month),
        "profiles": body.profiles,
    }
    await edit_group(request, facility, user, name, form)
    return next(g for g in await asyncio.to_thread(groups_of, facility, user) if g.name == name)


@router.get("/admin/groups", response_class=HTMLResponse)
async def groups_page(
    user: AdminUser, facility: FacilityDep, identity: IdentityDep
) -> HTMLResponse:
    rows = await asyncio.to_thread(groups_of, facility, user)
    return HTMLResponse(render(
        "portal/admin_groups.html", **common(facility, user, identity, "groups"), rows=rows,
        profiles=facility.base_settings.profiles,
        saved=request_flag(identity, None),
    ))  # fmt: skip


def request_flag(identity, value):  # placeholder kept simple: no flash messages
    return value


@router.post("/admin/groups/{name}")
async def group_form(
    request: Request, name: GroupName, user: AdminUser, facility: FacilityDep,
    identity: IdentityDep,
) -> RedirectResponse:  # fmt: skip
    form = parse_qs(
        (await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True
    )
    await edit_group(request, facility, user, name, form)
    return RedirectResponse(f"{identity.prefix}admin/groups#group-{name}", 303)
