"""Dask clusters: booked by gpuaf.dask.facility_cluster, followed and closed as jobs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gpuaf.api import dask_service
from gpuaf.api.deps import (
    CurrentUser,
    FacilityDep,
    check_same_origin,
    client_address,
    json_body,
)
from gpuaf.api.routes.jobs import ERRORS, prefix_of, require_scope
from gpuaf.api.schemas import ClusterOut, Problem

router = APIRouter(tags=["jobs"])


@router.post(
    "/clusters",
    response_model=ClusterOut,
    status_code=201,
    responses={**ERRORS, 413: {"model": Problem}},
    summary="Book a Dask cluster's workers on a slice: checked, recorded, followed as a job",
)
async def create_cluster(
    request: Request, user: CurrentUser, facility: FacilityDep
) -> JSONResponse:
    """Body: ``{"slice": "mig-1g.18gb", "workers": 4, "walltime": "2h", "name": "fit"}``.

    The answer says what every worker job must carry; the portal finds the workers in
    the batch system by the cluster's id, counts their time and shows them as the job's
    items. ``POST /jobs/<id>/cancel`` closes the cluster and removes its workers.
    """
    require_scope(user, "compute.create")
    check_same_origin(request, user)
    body = await json_body(request)
    cluster_id, worker = await dask_service.create(facility, user, body)
    await asyncio.to_thread(
        facility.ledger.audit, user.name, "dask.create", cluster_id,
        client_addr=client_address(request), profile=body["slice"], workers=body["workers"],
        backend=facility.backend.name,
    )  # fmt: skip
    prefix = prefix_of(request)
    out = ClusterOut(
        id=cluster_id, backend=facility.backend.name, slice=body["slice"],
        workers=worker.pop("workers"), worker=worker, url=f"{prefix}jobs/{cluster_id}",
        api_url=f"{prefix}api/v1/jobs/{cluster_id}",
    )  # fmt: skip
    return JSONResponse(out.model_dump(mode="json"), status_code=201)
