"""Tables of the ledger. Changing them needs a new Alembic revision in migrations/versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


SESSION_STATES = (
    "requested",
    "queued",
    "starting",
    "running",
    "stopping",
    "stopped",
    "failed",
    "lost",
)
FINAL_STATES = ("stopped", "failed", "lost")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    groups: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SessionRecord(Base):
    """One interactive server of one user on one slice."""

    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("backend", "job_id", name="uq_sessions_backend_job"),
        Index("ix_sessions_user_state", "user_name", "state"),
        Index("ix_sessions_group", "group_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(255))
    server_name: Mapped[str] = mapped_column(String(255), default="")
    profile: Mapped[str] = mapped_column(String(64))
    backend: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="requested")
    reason: Mapped[str] = mapped_column(Text, default="")
    node: Mapped[str | None] = mapped_column(String(255))
    gpu_ids: Mapped[list[str]] = mapped_column(default=list)
    gpu_share: Mapped[float] = mapped_column(Float, default=0.0)
    group_name: Mapped[str | None] = mapped_column(String(255))  # accounted to; None: none
    gpu_note: Mapped[str | None] = mapped_column(Text)  # the session agent's, if any
    # What its GPU samples said, stored once it ended and its samples were compacted or
    # deleted (gpu_summary_at: when); then these figures are the session's.
    gpu_peak_memory_mib: Mapped[int | None] = mapped_column(Integer)
    gpu_energy_wh: Mapped[float | None] = mapped_column(Float)
    gpu_summary_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Samples older than this are compacted (merged per device and bucket).
    samples_compacted_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    events: Mapped[list[SessionEvent]] = relationship(
        back_populates="session", order_by="SessionEvent.id", cascade="all, delete-orphan"
    )


class SessionEvent(Base):
    """One state a session entered, with when and why."""

    __tablename__ = "session_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    session: Mapped[SessionRecord] = relationship(back_populates="events")


class GpuSample(Base):
    """One reading of one device of a session, reported by the session agent."""

    __tablename__ = "gpu_samples"
    __table_args__ = (Index("ix_gpu_samples_session_at", "session_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    device: Mapped[str] = mapped_column(String(128))
    memory_used_mib: Mapped[int] = mapped_column(Integer)
    memory_total_mib: Mapped[int] = mapped_column(Integer)
    utilisation_pct: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    energy_j: Mapped[float | None] = mapped_column(Float)  # counter; on MIG the whole GPU's


class AuditEvent(Base):
    """Who did what, when, from where."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    client_addr: Mapped[str] = mapped_column(String(64), default="")


JOB_STATES = ("submitting", "queued", "running", "succeeded", "failed", "cancelled")
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
ITEM_STATES = ("queued", "held", "running", "succeeded", "failed", "cancelled")


class NotebookJob(Base):
    """A notebook submitted as a batch job: one row, one item per parameter set.

    A Dask cluster booked through the portal is a row of kind ``dask``: its items are the
    worker jobs seen in the batch system, counted like a notebook's items.
    """

    __tablename__ = "notebook_jobs"
    __table_args__ = (
        # a retried submission (same user, same key) finds the job it made
        UniqueConstraint("user_name", "idempotency_key", name="uq_notebook_jobs_user_key"),
        Index("ix_notebook_jobs_user_created", "user_name", "created_at"),
        Index("ix_notebook_jobs_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    # notebook: a notebook's items; dask: a Dask cluster, one item per worker job seen
    kind: Mapped[str] = mapped_column(String(16), default="notebook", server_default="notebook")
    workers: Mapped[int | None] = mapped_column(Integer)  # dask: workers at once, at most
    user_name: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(36))
    request_digest: Mapped[str] = mapped_column(String(64))  # what the key was used for
    name: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(Text, default="")  # the notebook's path, for people
    profile: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64), default="local")
    backend: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[str | None] = mapped_column(String(128))  # cluster / array job id
    walltime_s: Mapped[int] = mapped_column(Integer)
    gpu_share: Mapped[float] = mapped_column(Float, default=0.0)
    group_name: Mapped[str | None] = mapped_column(String(255))  # accounted to; None: none
    output_dir: Mapped[str] = mapped_column(Text)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the frozen one
    secrets_file: Mapped[str | None] = mapped_column(Text)  # removed once the job ended
    state: Mapped[str] = mapped_column(String(16), default="submitting")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    items: Mapped[list[NotebookJobItem]] = relationship(
        back_populates="job", order_by="NotebookJobItem.index", cascade="all, delete-orphan"
    )


class NotebookJobItem(Base):
    """One parameter set of a notebook job: one batch job (or array task) of its own."""

    __tablename__ = "notebook_job_items"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("notebook_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    job: Mapped[NotebookJob] = relationship(back_populates="items")


class GroupSetting(Base):
    """An admin's change to a group's quota or allowed slices, over the settings file's."""

    __tablename__ = "group_settings"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    concurrent_slices: Mapped[int | None] = mapped_column(Integer)  # None: no limit
    gpu_hours_per_month: Mapped[float | None] = mapped_column(Float)  # None: no limit
    profiles: Mapped[list[str]] = mapped_column(default=list)  # the slices it may book
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
