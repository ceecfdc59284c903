"""Reports of the session agent: NVML samples of a session's GPUs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Response

from gpuaf.api.deps import CurrentUser, FacilityDep, IdentityDep
from gpuaf.api.identity import HubIdentity
from gpuaf.api.schemas import GpuSamplesIn, Problem
from gpuaf.errors import PublicError
from gpuaf.ledger.models import FINAL_STATES, SessionRecord
from gpuaf.ledger.samples import store_samples

log = logging.getLogger("gpuaf.api.samples")
router = APIRouter(tags=["sessions"])


@router.post(
    "/sessions/{session_id}/samples",
    status_code=204,
    response_class=Response,
    responses={401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}},
    summary="Report GPU samples of a session (its session agent, with the session's token)",
)
async def report_samples(
    session_id: str,
    body: GpuSamplesIn,
    user: CurrentUser,
    facility: FacilityDep,
    identity: IdentityDep,
) -> Response:
    def store() -> tuple[str, str]:
        with facility.ledger.session() as db:
            record = db.get(SessionRecord, session_id)
            owner, server, state = (
                (record.user_name, record.server_name, record.state) if record else (None, "", "")
            )
        if owner is None:
            raise PublicError(f"There is no session {session_id}.", status=404)
        if owner != user.name:
            raise PublicError("Only the session's owner may report its samples.", status=403)
        store_samples(
            facility.ledger, session_id, body.note, (s.model_dump() for s in body.samples)
        )
        return server, state

    server, state = await asyncio.to_thread(store)
    active_at = last_active(body, facility.settings.sessions.gpu_busy_utilisation)
    if active_at is not None and state not in FINAL_STATES:
        await report_activity(identity, user.name, server, active_at)
    return Response(status_code=204)


def last_active(body: GpuSamplesIn, busy_from: int) -> dt.datetime | None:
    """The latest moment the report shows the session doing something, never in the future."""
    moments = [s.at for s in body.samples if (s.utilisation_pct or 0) >= busy_from]
    if body.activity and body.activity.last_activity:
        moments.append(body.activity.last_activity)
    moments = [m if m.tzinfo else m.replace(tzinfo=dt.UTC) for m in moments]
    return min(max(moments), dt.datetime.now(dt.UTC)) if moments else None


async def report_activity(identity: HubIdentity, user: str, server: str, at: dt.datetime) -> None:
    """Tell the hub (and so jupyterhub-idle-culler) that the session was active at ``at``."""
    when = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    auth = identity.hub_auth
    try:
        reply = await identity.http.post(
            f"{auth.api_url}/users/{quote(user, safe='')}/activity",
            json={"last_activity": when, "servers": {server: {"last_activity": when}}},
            headers={"Authorization": f"token {auth.api_token}"},
        )
        reply.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("session activity of %s/%s not passed to the hub: %s", user, server, exc)
