"""Recording sessions and their state history in the ledger."""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from gpuaf.ledger.db import Ledger
from gpuaf.ledger.models import (
    FINAL_STATES,
    SESSION_STATES,
    SessionEvent,
    SessionRecord,
    utcnow,
)


def open_session(
    ledger: Ledger,
    *,
    user: str,
    server: str,
    profile: str,
    backend: str,
    gpu_share: float = 0.0,
    group: str | None = None,
) -> str:
    """Create a session in state ``requested``; return its id."""
    session_id = str(uuid.uuid4())
    with ledger.session() as db:
        db.add(
            SessionRecord(
                id=session_id,
                user_name=user,
                server_name=server,
                profile=profile,
                backend=backend,
                state="requested",
                gpu_share=gpu_share,
                group_name=group,
                events=[SessionEvent(state="requested")],
            )
        )
    return session_id


def set_state(ledger: Ledger, session_id: str, state: str, reason: str = "", **fields: Any) -> None:
    """Move a session to ``state`` (a no-op if it is there already) and update fields."""
    set_states(ledger, {session_id: (state, reason)}, **fields)


def stop_reason(ledger: Ledger, session_id: str | None) -> str | None:
    """The reason someone gave when asking the session to stop (``stopping``), if any."""
    if not session_id:
        return None
    with ledger.session() as db:
        record = db.get(SessionRecord, session_id)
        if record is None or record.state != "stopping" or record.reason in ("", "stop asked"):
            return None
        return record.reason


def set_states(ledger: Ledger, changes: dict[str, tuple[str, str]], **fields: Any) -> None:
    """Several sessions moved (session id -> (state, reason)) in one transaction.

    A session in a final state (stopped, failed, lost) stays there: the first word on how
    a session ended is the one kept, whoever reports the end again later. A ``stopping``
    session only moves on to a final state (a poll that still sees its server up does not
    take it back to running).
    """
    if bad := {s for s, _ in changes.values()} - set(SESSION_STATES):
        raise ValueError(f"unknown session state {sorted(bad)[0]!r}")
    with ledger.session() as db:
        for session_id, (state, reason) in changes.items():
            record = db.get(SessionRecord, session_id)
            if record is None or record.state in FINAL_STATES:
                continue
            if record.state == "stopping" and state not in FINAL_STATES:
                continue
            for key, value in fields.items():
                setattr(record, key, value)
            record.updated_at = utcnow()
            if record.state != state:
                record.state = state
                record.reason = reason
                db.add(SessionEvent(session_id=session_id, state=state, reason=reason))


def sessions_of(
    ledger: Ledger, user: str, states: Sequence[str] | None = None
) -> list[SessionRecord]:
    with ledger.session() as db:
        query = select(SessionRecord).where(SessionRecord.user_name == user)
        if states:
            query = query.where(SessionRecord.state.in_(states))
        return list(db.scalars(query.order_by(SessionRecord.created_at.desc())))


def typical_wait(ledger: Ledger, profile: str, last: int = 20) -> tuple[float, int] | None:
    """Median seconds from ``queued`` to ``starting`` over the profile's last starts.

    Returns (median, how many starts it is taken over), or None with fewer than 3.
    """
    queued = aliased(SessionEvent)
    started = aliased(SessionEvent)
    with ledger.session() as db:
        rows = db.execute(
            select(queued.at, started.at)
            .join(SessionRecord, SessionRecord.id == queued.session_id)
            .join(started, started.session_id == queued.session_id)
            .where(
                SessionRecord.profile == profile,
                queued.state == "queued",
                started.state == "starting",
            )
            .order_by(started.at.desc())
            .limit(last)
        ).all()
    waits = sorted(max((b - a).total_seconds(), 0.0) for a, b in rows)
    if len(waits) < 3:
        return None
    return statistics.median(waits), len(waits)


@dataclass(frozen=True)
class Notice:
    server: str
    profile: str
    state: str
    reason: str
    at: str


def recent_endings(
    ledger: Ledger, user: str, within: dt.timedelta = dt.timedelta(hours=24)
) -> list[Notice]:
    """The user's sessions that were lost or failed lately: what the home page tells them."""
    since = utcnow() - within
    with ledger.session() as db:
        rows = db.scalars(
            select(SessionRecord)
            .where(
                SessionRecord.user_name == user,
                SessionRecord.state.in_(("lost", "failed")),
                SessionRecord.updated_at >= since,
            )
            .order_by(SessionRecord.updated_at.desc())
            .limit(5)
        ).all()
        return [
            Notice(r.server_name, r.profile, r.state, r.reason, f"{r.updated_at:%Y-%m-%d %H:%M}")
            for r in rows
        ]
