"""The ledger on SQLite and on PostgreSQL: migrations, sessions and their history, audit."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select

from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.models import AuditEvent, SessionEvent, SessionRecord
from gpuaf.ledger.sessions import open_session, sessions_of, set_state, typical_wait

pytestmark = pytest.mark.postgres


def test_migrations_create_every_table_and_are_idempotent(ledger_url):
    migrate(ledger_url)
    migrate(ledger_url)  # a second start changes nothing
    ledger = Ledger(ledger_url)
    tables = set(inspect(ledger.engine).get_table_names())
    ledger.dispose()
    assert {"users", "sessions", "session_events", "audit_events", "alembic_version"} <= tables


def test_a_session_keeps_the_history_of_its_states(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    sid = open_session(ledger, user="alice", server="", profile="mig-1g.18gb", backend="local")
    set_state(ledger, sid, "queued", "submitted", job_id="local-1")
    set_state(ledger, sid, "queued", "again")  # no second event for the same state
    set_state(ledger, sid, "starting", node="wn01", gpu_ids=["MIG-1"])
    set_state(ledger, sid, "running", "server up")
    set_state(ledger, sid, "stopped", "stopped by the user")
    with pytest.raises(ValueError, match="unknown session state"):
        set_state(ledger, sid, "exploded")
    [record] = sessions_of(ledger, "alice")
    with ledger.session() as db:
        record = db.get(SessionRecord, sid)
        history = [(e.state, e.reason) for e in record.events]
    assert history == [
        ("requested", ""),
        ("queued", "submitted"),
        ("starting", ""),
        ("running", "server up"),
        ("stopped", "stopped by the user"),
    ]
    assert record.node == "wn01" and record.gpu_ids == ["MIG-1"] and record.job_id == "local-1"
    assert sessions_of(ledger, "alice", ["running"]) == []
    ledger.dispose()


def test_one_job_belongs_to_one_session(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    a = open_session(ledger, user="alice", server="", profile="cpu", backend="local")
    b = open_session(ledger, user="bob", server="", profile="cpu", backend="local")
    set_state(ledger, a, "queued", job_id="local-x")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        set_state(ledger, b, "queued", job_id="local-x")
    ledger.dispose()


def test_audit_records_who_what_and_from_where(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    ledger.audit("alice", "session.book", "alice/", client_addr="192.0.2.7", profile="cpu")
    with ledger.session() as db:
        [event] = db.scalars(select(AuditEvent)).all()
    assert (event.actor, event.action, event.client_addr) == ("alice", "session.book", "192.0.2.7")
    assert event.detail == {"profile": "cpu"}
    assert event.at is not None
    ledger.dispose()


def test_typical_wait_is_the_median_of_the_slices_recent_starts(ledger_url):
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    t0 = dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
    waits = {"gpu-1": [30, 600, 45, 90], "mig": [5, 7]}
    for profile, seconds in waits.items():
        for i, wait in enumerate(seconds):
            sid = open_session(ledger, user="u", server=str(i), profile=profile, backend="local")
            with ledger.session() as db:
                queued = t0 + dt.timedelta(hours=i)
                db.add(SessionEvent(session_id=sid, state="queued", at=queued))
                db.add(SessionEvent(session_id=sid, state="starting",
                                    at=queued + dt.timedelta(seconds=wait)))  # fmt: skip
    assert typical_wait(ledger, "gpu-1") == (67.5, 4)  # median of 30, 45, 90, 600
    assert typical_wait(ledger, "gpu-1", last=3) == (90.0, 3)  # the last three: 600, 45, 90
    assert typical_wait(ledger, "mig") is None  # two starts say too little
    assert typical_wait(ledger, "cpu") is None
    ledger.dispose()
