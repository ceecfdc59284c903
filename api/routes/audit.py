from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Select, func, select

from gpuaf.api.deps import AdminUser, FacilityDep, user_roles
from gpuaf.api.schemas import AuditOut, AuditPage, Problem
from gpuaf.ledger.models import AuditEvent, User

router = APIRouter(tags=["audit"])


@router.get(
    "/audit",
    response_model=AuditPage,
    responses={401: {"model": Problem}, 403: {"model": Problem}},
    summary="The audit log, newest first (admins; a collaboration admin sees their members)",
)
def audit(
    user: AdminUser,
    facility: FacilityDep,
    actor: str | None = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z.]+$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    return audit_page(facility, user, actor, action, since, until, limit, offset)


def audit_page(facility, user, actor, action, since, until, limit: int, offset: int) -> AuditPage:
    """Audit events matching the filters that ``user`` may see, newest first."""
    query: Select = select(AuditEvent)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at < until)
    with facility.ledger.session() as db:
        if "facility-admin" not in user_roles(facility, user):
            query = query.where(AuditEvent.actor.in_(_members(db, facility, user)))
        total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = db.scalars(
            query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).offset(offset).limit(limit)
        )
        items = [
            AuditOut(at=r.at, actor=r.actor, action=r.action, target=r.target,
                     client_addr=r.client_addr, detail=r.detail)
            for r in rows
        ]  # fmt: skip
    return AuditPage(total=total, offset=offset, items=items)


def _members(db, facility, user) -> list[str]:
    """Users who share a group in which ``user`` is a collaboration admin."""
    groups = facility.settings.groups
    mine = {
        groups[g].collaboration or g
        for g in user.groups
        if g in groups and groups[g].role == "collaboration-admin"
    }
    names = {user.name}
    for row in db.scalars(select(User)):
        if mine & set(row.groups):
            names.add(row.name)
    return sorted(names)
