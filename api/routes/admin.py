"""Admins' live view: sessions with their GPU use of the last hour, the queue per slice,
stopping a session with a reason (audited). A collaboration admin sees and stops only
the sessions of their collaboration's members; a facility admin all."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from gpuaf.api.deps import (
    AdminUser,
    FacilityDep,
    IdentityDep,
    check_same_origin,
    client_address,
    visible_groups,
)
from gpuaf.api.routes.pages import common
from gpuaf.charts import sparkline
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger.models import FINAL_STATES, GpuSample, SessionRecord, User, utcnow
from gpuaf.ledger.sessions import set_state
from gpuaf.templates import render

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["admin"])
PER_PAGE = 25
WINDOW = dt.timedelta(hours=1)
SessionId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class LiveSession(BaseModel):
    id: str
    user: str
    server: str
    profile: str
    group: str | None
    state: str
    node: str | None
    gpu_ids: list[str]
    since: dt.datetime
    utilisation: list[float]  # the last hour, oldest first (mean over the session's devices)
    memory_mib: list[float]


def members(db, facility: Facility, scope: set[str]) -> list[str]:
    return [u.name for u in db.scalars(select(User)) if scope & set(u.groups or [])]


def live_sessions(facility: Facility, user, page: int) -> tuple[list[LiveSession], bool]:
    scope = visible_groups(facility, user)
    query = select(SessionRecord).where(SessionRecord.state.not_in(FINAL_STATES))
    with facility.ledger.session() as db:
        if scope is not None:
            query = query.where(SessionRecord.user_name.in_(members(db, facility, scope)))
        rows = list(db.scalars(
            query.order_by(SessionRecord.created_at.desc(), SessionRecord.id)
            .offset((page - 1) * PER_PAGE).limit(PER_PAGE + 1)
        ))  # fmt: skip
        ids = [r.id for r in rows[:PER_PAGE]]
        series: dict[str, list[tuple]] = defaultdict(list)
        if ids:
            readings = db.execute(
                select(GpuSample.session_id, GpuSample.at, func.avg(GpuSample.utilisation_pct),
                       func.sum(GpuSample.memory_used_mib))
                .where(GpuSample.session_id.in_(ids), GpuSample.at >= utcnow() - WINDOW)
                .group_by(GpuSample.session_id, GpuSample.at).order_by(GpuSample.at)
            )  # fmt: skip
            for sid, _at, util, mem in readings:
                series[sid].append((float(util or 0), float(mem or 0)))
        out = [
            LiveSession(
                id=r.id, user=r.user_name, server=r.server_name, profile=r.profile,
                group=r.group_name, state=r.state, node=r.node, gpu_ids=r.gpu_ids or [],
                since=r.created_at, utilisation=[u for u, _ in series[r.id]],
                memory_mib=[m for _, m in series[r.id]],
            )
            for r in rows[:PER_PAGE]
        ]  # fmt: skip
    return out, len(rows) > PER_PAGE


@api_router.get("/admin/sessions", response_model=list[LiveSession])
async def live_sessions_api(
    user: AdminUser, facility: FacilityDep, page: Annotated[int, Query(ge=1, le=10_000)] = 1
) -> list[LiveSession]:
    """Live sessions an admin may see, with their GPU use of the last hour."""
    rows, _more = await asyncio.to_thread(live_sessions, facility, user, page)
    return rows


@router.get("/admin/sessions", response_class=HTMLResponse)
async def live_sessions_page(
    user: AdminUser, facility: FacilityDep, identity: IdentityDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:  # fmt: skip
    rows, more = await asyncio.to_thread(live_sessions, facility, user, page)
    table = await facility.availability()
    profiles = [(p, table.get(p.name)) for p in facility.settings.profiles]
    return HTMLResponse(render(
        "portal/admin_sessions.html", **common(facility, user, identity, "live"), rows=rows,
        page=page, more=more, profiles=profiles, spark=sparkline, now=utcnow(),
    ))  # fmt: skip


async def stop_session(request: Request, facility: Facility, user, session_id: str, reason: str):
    """Stop one session through the hub, with the reason its user will read."""
    reason = " ".join(reason.split())
    if not 3 <= len(reason) <= 500:
        raise PublicError("Give a reason of 3 to 500 characters; the user will read it.")
    check_same_origin(request, user)
    found = await asyncio.to_thread(_visible_live, facility, user, session_id)
    record = found[0] if found else None
    if record is None:
        raise PublicError(f"No live session {session_id} that you may stop.", status=404)
    role = "facility admin" if visible_groups(facility, user) is None else "collaboration admin"
    said = f"Stopped by {user.name} ({role}): {reason}"
    await asyncio.to_thread(set_state, facility.ledger, session_id, "stopping", said)
    identity = request.app.state.identity
    hub = identity.hub_auth
    name = quote(record.user_name, safe="")
    server = quote(record.server_name, safe="")
    path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
    reply = await identity.http.delete(
        hub.api_url + path, headers={"Authorization": f"token {hub.api_token}"}
    )
    if reply.status_code not in (202, 204, 400, 404):
        said = f"hub DELETE {path}: {reply.status_code} {reply.text}"
        raise PublicError(
            "The hub did not stop the session; try again.", status=502, log_message=said
        )
    target = f"{record.user_name}/{record.server_name}"
    await asyncio.to_thread(
        facility.ledger.audit, user.name, "session.stop", target,
        client_addr=client_address(request), session=session_id, reason=reason, by="admin",
    )  # fmt: skip
    return record


def _visible_live(facility: Facility, user, session_id: str) -> list[SessionRecord]:
    scope = visible_groups(facility, user)
    with facility.ledger.session() as db:
        query = select(SessionRecord).where(
            SessionRecord.id == session_id, SessionRecord.state.not_in(FINAL_STATES)
        )
        if scope is not None:
            query = query.where(SessionRecord.user_name.in_(members(db, facility, scope)))
        rows = list(db.scalars(query))
        db.expunge_all()
        return rows


class NodesOut(BaseModel):
    reported: bool  # False: this backend does not report its nodes
    nodes: list[dict]


async def node_map(facility: Facility, user) -> NodesOut:
    """Nodes and slices; a collaboration admin reads the names of their members only."""
    nodes = await facility.backend.nodes()
    if nodes is None:
        return NodesOut(reported=False, nodes=[])
    scope = visible_groups(facility, user)
    if scope is not None:
        with facility.ledger.session() as db:
            mine = set(members(db, facility, scope))
    out = []
    for node in nodes:
        data = dataclasses.asdict(node)
        for gpu in data["gpus"]:
            for use in gpu["slices"]:
                if scope is not None and use["user"] and use["user"] not in mine:
                    use["user"] = "another collaboration"
        out.append(data)
    return NodesOut(reported=True, nodes=out)


@api_router.get("/admin/nodes", response_model=NodesOut)
async def nodes_api(user: AdminUser, facility: FacilityDep) -> NodesOut:
    """Every node with its GPUs and their slices: free, busy (whose) or drained."""
    return await node_map(facility, user)


@router.get("/admin/nodes", response_class=HTMLResponse)
async def nodes_page(user: AdminUser, facility: FacilityDep, identity: IdentityDep) -> HTMLResponse:
    data = await node_map(facility, user)
    return HTMLResponse(render(
        "portal/admin_nodes.html", **common(facility, user, identity, "nodes"), data=data,
        backend=facility.backend.name,
    ))  # fmt: skip


class StopIn(BaseModel):
    reason: str


@api_router.post("/admin/sessions/{session_id}/stop", status_code=202)
async def stop_api(
    request: Request, session_id: SessionId, body: StopIn, user: AdminUser, facility: FacilityDep
) -> dict:
    """Stop a session with a reason its user will read (audited)."""
    await stop_session(request, facility, user, session_id, body.reason)
    return {"detail": "The session is stopping."}


@router.post("/admin/sessions/{session_id}/stop")
async def stop_from_page(
    request: Request, session_id: SessionId, user: AdminUser, facility: FacilityDep,
    identity: IdentityDep,
) -> RedirectResponse:  # fmt: skip
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    await stop_session(request, facility, user, session_id, form.get("reason", [""])[0])
    return RedirectResponse(f"{identity.prefix}admin/sessions", 303)
