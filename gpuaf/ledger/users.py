"""Users as the ledger knows them: name, groups at their last login or call, times."""

from __future__ import annotations

from sqlalchemy import select

from gpuaf.ledger.db import Ledger
from gpuaf.ledger.models import User, utcnow


def upsert_user(ledger: Ledger, name: str, groups: list[str]) -> None:
    with ledger.session() as db:
        row = db.scalars(select(User).where(User.name == name)).first()
        if row is None:
            db.add(User(name=name, groups=sorted(groups)))
        else:
            row.groups = sorted(groups)
            row.last_seen_at = utcnow()
