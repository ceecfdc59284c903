from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gpuaf import __version__
from gpuaf.api.deps import FacilityDep
from gpuaf.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Is the portal API up?")
def health(facility: FacilityDep) -> Health:
    try:
        with facility.ledger.session() as db:
            db.execute(text("SELECT 1"))
        ledger = "ok"
    except SQLAlchemyError as exc:
        ledger = f"unreachable: {type(exc).__name__}"
    return Health(
        status="ok" if ledger == "ok" else "degraded",
        version=__version__,
        ledger=ledger,
        backend=facility.backend.name,
    )
