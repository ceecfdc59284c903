"""Reading a running portal's ledger directly, as its database holds it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from gpuaf.ledger.models import AuditEvent, SessionEvent, SessionRecord
from gpuaf.settings import load_settings


def _engine(settings_path: Path):
    return create_engine(load_settings(settings_path).ledger_url)


def sessions_with_history(settings_path: Path, user: str) -> list[tuple[SessionRecord, list[str]]]:
    """The user's sessions, oldest first, each with the states it went through."""
    engine = _engine(settings_path)
    with Session(engine) as db:
        records = db.scalars(
            select(SessionRecord)
            .where(SessionRecord.user_name == user)
            .order_by(SessionRecord.created_at)
        ).all()
        out = [
            (
                r,
                list(
                    db.scalars(
                        select(SessionEvent.state)
                        .where(SessionEvent.session_id == r.id)
                        .order_by(SessionEvent.id)
                    )
                ),
            )
            for r in records
        ]
    engine.dispose()
    return out


def latest_session(settings_path: Path, user: str) -> SessionRecord | None:
    rows = sessions_with_history(settings_path, user)
    return rows[-1][0] if rows else None


def audit_actions(settings_path: Path, actor: str) -> list[str]:
    engine = _engine(settings_path)
    with Session(engine) as db:
        actions = list(db.scalars(select(AuditEvent.action).where(AuditEvent.actor == actor)))
    engine.dispose()
    return actions


def first_event_times(settings_path: Path, session_id: str) -> dict[str, dt.datetime]:
    """When the session first entered each state, as the ledger recorded it."""
    engine = _engine(settings_path)
    with Session(engine) as db:
        rows = db.execute(
            select(SessionEvent.state, SessionEvent.at)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.id)
        ).all()
    engine.dispose()
    out: dict[str, dt.datetime] = {}
    for state, at in rows:
        out.setdefault(state, at if at.tzinfo else at.replace(tzinfo=dt.UTC))
    return out


def job_gpu_hours(settings_path: Path, user: str) -> float:
    """The user's job GPU-hours this month as quotas count them, unrounded."""
    from gpuaf.policy import job_hours, month_start

    now = dt.datetime.now(dt.UTC)
    with Session(_engine(settings_path)) as db:
        return job_hours(db, user, month_start(now), now)
