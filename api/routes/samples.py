"""Reports of the session agent: NVML samples of a session's GPUs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from gpuaf.api.deps import CurrentUser, FacilityDep
from gpuaf.api.schemas import GpuSamplesIn, Problem
from gpuaf.errors import PublicError
from gpuaf.ledger.models import SessionRecord
from gpuaf.ledger.samples import store_samples

router = APIRouter(tags=["sessions"])


@router.post(
    "/sessions/{session_id}/samples",
    status_code=204,
    response_class=Response,
    responses={401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}},
    summary="Report GPU samples of a session (its session agent, with the session's token)",
)
async def report_samples(
    session_id: str, body: GpuSamplesIn, user: CurrentUser, facility: FacilityDep
) -> Response:
    def store() -> None:
        with facility.ledger.session() as db:
            record = db.get(SessionRecord, session_id)
            owner = record.user_name if record else None
        if owner is None:
            raise PublicError(f"There is no session {session_id}.", status=404)
        if owner != user.name:
            raise PublicError("Only the session's owner may report its samples.", status=403)
        store_samples(
            facility.ledger, session_id, body.note, (s.model_dump() for s in body.samples)
        )

    await asyncio.to_thread(store)
    return Response(status_code=204)
