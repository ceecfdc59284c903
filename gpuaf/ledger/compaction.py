"""Downsampling and retention of GPU samples, with the sessions' figures kept right.

Samples younger than ``ledger.samples_full_resolution_for`` stay as the session agent
sent them. Older ones are merged per session, device and bucket (``ledger.samples_bucket``,
aligned to the epoch) into one row: memory used and total the maximum, utilisation and
power the mean of the readings there are, energy the bucket's last counter value, at the
time of the bucket's last sample. Each device's first sample is never merged: with it, the
first and the last value of NVML's energy counter survive, so the energy of a session (last
- first of a counter that only grows) is exactly what it was, and so is its peak memory. The
power integral (devices without a counter) moves slightly: the trapezoid then runs over
the buckets' means at their last sample's time instead of over every reading.

A session that has ended gets its figures (peak memory, energy) stored on its record before
its samples are first touched; from then on they are its figures (see ``summaries``). The
samples of sessions that ended more than ``ledger.samples_keep_for`` ago are deleted.

Each session is compacted up to ``sessions.samples_compacted_until``, about a day of its
samples per transaction, so a second run with the same ``now`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from gpuaf.ledger.db import Ledger
from gpuaf.ledger.models import FINAL_STATES, GpuSample, SessionEvent, SessionRecord, utcnow
from gpuaf.ledger.samples import sample_summaries
from gpuaf.settings import LedgerSettings

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CHUNK_S = 86400  # one transaction merges at most about this much of one session's samples
DELETE_BATCH = 500  # ids per DELETE … WHERE id IN (…), below every database's limit
COLUMNS = ("id", "session_id", "device", "at", "memory_used_mib", "memory_total_mib",
           "utilisation_pct", "power_w", "energy_j")  # fmt: skip


@dataclass
class CompactionResult:
    sessions_compacted: int = 0
    samples_merged: int = 0  # rows replaced by merged rows
    rows_written: int = 0  # the merged rows
    sessions_expired: int = 0
    samples_deleted: int = 0  # rows of sessions past samples_keep_for

    @property
    def rows_removed(self) -> int:
        return self.samples_merged - self.rows_written + self.samples_deleted

    @property
    def changed(self) -> bool:
        return bool(self.samples_merged or self.samples_deleted)


def compact_samples(
    ledger: Ledger, now: dt.datetime | None = None, *, settings: LedgerSettings | None = None
) -> CompactionResult:
    """Delete expired samples, then merge old ones; idempotent for a given ``now``."""
    settings = settings or LedgerSettings()
    now = _aware(now or utcnow())
    result = CompactionResult()
    if settings.samples_keep_for is not None:
        cutoff = now - dt.timedelta(seconds=settings.samples_keep_for)
        for sid in _expired(ledger, cutoff):
            with ledger.session() as db:
                record = db.get(SessionRecord, sid, with_for_update=True)
                store_summary(db, record, now)
                deleted = db.execute(delete(GpuSample).where(GpuSample.session_id == sid))
            result.sessions_expired += 1
            result.samples_deleted += deleted.rowcount
    bucket = settings.samples_bucket
    boundary = _floor(now - dt.timedelta(seconds=settings.samples_full_resolution_for), bucket)
    for sid in _pending(ledger, boundary):
        merged, written = _compact_session(ledger, sid, boundary, bucket, now)
        result.sessions_compacted += 1
        result.samples_merged += merged
        result.rows_written += written
    return result


def store_summary(db: Session, record: SessionRecord, now: dt.datetime) -> None:
    """Keep the figures of an ended session's samples on its record (once)."""
    if record.gpu_summary_at is not None or record.state not in FINAL_STATES:
        return
    summary = sample_summaries(db, [record.id]).get(record.id)
    if summary is not None:
        record.gpu_peak_memory_mib = summary.peak_memory_mib
        record.gpu_energy_wh = summary.energy_wh
        record.gpu_summary_at = now


def _expired(ledger: Ledger, cutoff: dt.datetime) -> list[str]:
    """Sessions with samples that ended (first entered a final state) before cutoff."""
    ended = (
        select(SessionEvent.session_id, func.min(SessionEvent.at).label("at"))
        .where(SessionEvent.state.in_(FINAL_STATES))
        .group_by(SessionEvent.session_id)
        .subquery()
    )
    query = (
        select(SessionRecord.id)
        .join(ended, ended.c.session_id == SessionRecord.id)
        .where(
            SessionRecord.state.in_(FINAL_STATES),
            ended.c.at < cutoff,
            exists().where(GpuSample.session_id == SessionRecord.id),
        )
    )
    with ledger.session() as db:
        return list(db.scalars(query))


def _pending(ledger: Ledger, boundary: dt.datetime) -> list[str]:
    """Sessions with samples before boundary that are not compacted yet."""
    until = SessionRecord.samples_compacted_until
    rows = exists().where(
        GpuSample.session_id == SessionRecord.id,
        GpuSample.at < boundary,
        or_(until.is_(None), GpuSample.at >= until),
    )
    query = select(SessionRecord.id).where(or_(until.is_(None), until < boundary), rows)
    with ledger.session() as db:
        return list(db.scalars(query))


def _compact_session(
    ledger: Ledger, sid: str, boundary: dt.datetime, bucket: int, now: dt.datetime
) -> tuple[int, int]:
    merged = written = 0
    chunk = dt.timedelta(seconds=bucket * max(1, CHUNK_S // bucket))
    while True:
        with ledger.session() as db:
            record = db.get(SessionRecord, sid, with_for_update=True)  # one compactor at a time
            if record is None:
                break
            until = record.samples_compacted_until and _aware(record.samples_compacted_until)
            after = [GpuSample.at >= until] if until else []
            first = db.scalar(
                select(func.min(GpuSample.at)).where(
                    GpuSample.session_id == sid, GpuSample.at < boundary, *after
                )
            )
            if first is None:
                if until is None or until < boundary:
                    record.samples_compacted_until = boundary
                break
            store_summary(db, record, now)
            start = _floor(_aware(first), bucket)
            start = max(start, until) if until else start  # until may predate a bucket change
            end = min(start + chunk, boundary)
            m, w = _merge(db, sid, start, end, bucket)
            record.samples_compacted_until = end
        merged, written = merged + m, written + w
    return merged, written


def _merge(
    db: Session, sid: str, start: dt.datetime, end: dt.datetime, bucket: int
) -> tuple[int, int]:
    rows = db.execute(
        select(*(getattr(GpuSample, c) for c in COLUMNS))
        .where(GpuSample.session_id == sid, GpuSample.at >= start, GpuSample.at < end)
        .order_by(GpuSample.device, GpuSample.at, GpuSample.id)
    ).all()
    gone: list[int] = []
    new: list[dict[str, Any]] = []
    for device, samples in itertools.groupby(rows, key=lambda s: s.device):
        samples = list(samples)
        if not _seen_before(db, sid, device, samples[0].at):
            samples = samples[1:]  # the device's first sample: the counter's first value
        for _, group in itertools.groupby(samples, key=lambda s: _bucket_of(s.at, bucket)):
            group = list(group)
            if len(group) > 1:  # one row is already its bucket's merged row
                gone.extend(s.id for s in group)
                new.append(merged_row(group))
    for i in range(0, len(gone), DELETE_BATCH):
        db.execute(delete(GpuSample).where(GpuSample.id.in_(gone[i : i + DELETE_BATCH])))
    if new:
        db.execute(insert(GpuSample), new)
    return len(gone), len(new)


def merged_row(group: Sequence[Any]) -> dict[str, Any]:
    """One row for the samples of one device in one bucket, in time order."""
    util = [s.utilisation_pct for s in group if s.utilisation_pct is not None]
    power = [s.power_w for s in group if s.power_w is not None]
    energy = [s.energy_j for s in group if s.energy_j is not None]
    return {
        "session_id": group[0].session_id,
        "device": group[0].device,
        "at": group[-1].at,
        "memory_used_mib": max(s.memory_used_mib for s in group),
        "memory_total_mib": max(s.memory_total_mib for s in group),
        "utilisation_pct": statistics.fmean(util) if util else None,
        "power_w": statistics.fmean(power) if power else None,
        "energy_j": energy[-1] if energy else None,
    }


def _seen_before(db: Session, sid: str, device: str, at: dt.datetime) -> bool:
    earlier = select(GpuSample.id).where(
        GpuSample.session_id == sid, GpuSample.device == device, GpuSample.at < at
    )
    return db.scalar(select(exists(earlier))) or False


def _bucket_of(at: dt.datetime, bucket: int) -> int:
    return int((_aware(at) - EPOCH).total_seconds()) // bucket


def _floor(at: dt.datetime, bucket: int) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=_bucket_of(at, bucket) * bucket)


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite drops the zone
