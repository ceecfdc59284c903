"""Reconcile the ledger's sessions with the sources of truth: the batch system and the hub.

One round reads every active session of the ledger, asks the backend for the status of all
their jobs in one call, and moves each session to the state the truth implies. A round is
idempotent: run it twice, or after a restart of anything, and nothing is doubled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from gpuaf.ledger import Ledger
from gpuaf.ledger.models import FINAL_STATES, SessionRecord, utcnow
from gpuaf.ledger.sessions import set_states
from gpuaf.spawners.backends import Backend, JobState, JobStatus

ServerKey = tuple[str, str]  # (user, server name)


@dataclass
class Round:
    checked: int = 0
    changed: dict[str, str] = field(default_factory=dict)  # session id -> new state
    released: list[str] = field(default_factory=list)  # job ids of orphans removed


@dataclass
class Memory:
    """What a reconciler remembers between rounds: since when the hub has not known a session."""

    absent_since: dict[str, dt.datetime] = field(default_factory=dict)


def target_state(status: JobStatus, server_ready: bool | None) -> tuple[str, str]:
    """The session state (and reason) a job's status implies."""
    state = status.state
    if state == JobState.RUNNING:
        return ("running", "server up") if server_ready else ("starting", "job running")
    if state in (JobState.PENDING, JobState.HELD):
        return "queued", status.reason or "waiting in the batch system"
    if state == JobState.DONE:
        return "stopped", status.reason or "the job ended"
    if state == JobState.CANCELLED:
        return "stopped", status.reason or "the job was removed"
    if state == JobState.FAILED:
        return "failed", status.reason or "the job failed"
    return "lost", status.reason or "the batch system no longer knows the job"


async def reconcile(
    ledger: Ledger,
    backend: Backend,
    servers: Mapping[ServerKey, bool] | None = None,
    *,
    never_submitted_after: dt.timedelta = dt.timedelta(minutes=15),
    orphan_after: dt.timedelta = dt.timedelta(seconds=20),
    stopping_grace: dt.timedelta = dt.timedelta(minutes=10),
    memory: Memory | None = None,
    now: dt.datetime | None = None,
) -> Round:
    """One round. ``servers``: (user, server) -> ready, as the hub reports them (None: unknown).

    An *orphan* is a session whose job is alive while the hub has not known its server for
    ``orphan_after`` (seen in two rounds at least, through ``memory``): e.g. a hub killed
    between submitting a job and recording it. Its job is removed, so it holds no slice.
    """
    now = now or utcnow()
    with ledger.session() as db:
        active = [
            (
                r.id,
                r.user_name,
                r.server_name,
                r.job_id,
                r.backend,
                r.state,
                r.created_at,
                r.updated_at,
            )
            for r in db.scalars(
                select(SessionRecord).where(SessionRecord.state.not_in(FINAL_STATES))
            )
        ]
    mine = [row for row in active if row[4] == backend.name]
    jobs = [row[3] for row in mine if row[3]]
    statuses = await backend.status(jobs) if jobs else {}
    result = Round(checked=len(mine))
    moves: dict[str, tuple[str, str]] = {}
    for sid, user, server, job_id, _backend, state, created, updated in mine:
        if state == "stopping" and now - _aware(updated or created) < stopping_grace:
            continue  # the spawner is ending it and will say how; only a stuck stop is ours
        if not job_id:
            if now - _aware(created) > never_submitted_after:
                new, reason = "failed", "the request never reached the batch system"
            else:
                continue  # a spawn in progress
        else:
            # the hub's readiness only moves a session forward: a running server whose job
            # still runs stays running, whatever a list taken mid-change says
            ready = state == "running" or bool(servers and servers.get((user, server)))
            new, reason = target_state(statuses[job_id], ready)
            if state == "stopping" and new in LIVE:
                continue  # still being removed
            known = servers is None or (user, server) in servers
            orphan = memory is not None and _orphaned(memory, sid, known, now, orphan_after)
            if orphan and new in LIVE:
                await backend.cancel(job_id)
                result.released.append(job_id)
                new, reason = ORPHAN[state == "running"]
        if new != state:
            moves[sid] = (new, reason)
    if moves:
        set_states(ledger, moves)  # one transaction for the whole round
    if memory is not None and servers is not None:  # forget sessions that ended
        ended = {sid for sid, (new, _reason) in moves.items() if new in FINAL_STATES}
        live = {row[0] for row in mine} - ended
        memory.absent_since = {k: v for k, v in memory.absent_since.items() if k in live}
    result.changed = {sid: new for sid, (new, _reason) in moves.items()}
    return result


LIVE = ("queued", "starting", "running")
ORPHAN = {
    False: (
        "failed",
        "the hub lost track of this session while it was starting (e.g. it was restarted); "
        "its job was removed so that it does not hold a slice. Start the session again.",
    ),
    True: ("stopped", "the hub no longer knew this session's server; its job was removed"),
}


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _orphaned(memory: Memory, sid: str, known: bool, now: dt.datetime, after: dt.timedelta) -> bool:
    if known:
        memory.absent_since.pop(sid, None)
        return False
    since = memory.absent_since.setdefault(sid, now)
    return now - since >= after
