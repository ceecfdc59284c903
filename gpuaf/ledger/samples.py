"""GPU samples of sessions: storing the session agent's reports and summarising them."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpuaf.ledger.db import Ledger
from gpuaf.ledger.models import GpuSample, SessionRecord

FIELDS = (
    "at",
    "device",
    "memory_used_mib",
    "memory_total_mib",
    "utilisation_pct",
    "power_w",
    "energy_j",
)


@dataclass(frozen=True)
class GpuSummary:
    peak_memory_mib: int | None = None
    energy_wh: float | None = None


def store_samples(
    ledger: Ledger, session_id: str, note: str | None, samples: Iterable[dict[str, Any]]
) -> None:
    """Add samples (dicts with FIELDS) to a session; a note, if given, replaces the last."""
    with ledger.session() as db:
        if note is not None:
            db.get(SessionRecord, session_id).gpu_note = note
        db.add_all(GpuSample(session_id=session_id, **{k: s[k] for k in FIELDS}) for s in samples)


def summaries(db: Session, session_ids: Sequence[str]) -> dict[str, GpuSummary]:
    """Peak memory and energy of each session that has samples or a stored summary.

    A session whose summary was stored (it ended and its samples were compacted or
    deleted, see :mod:`gpuaf.ledger.compaction`) is given the stored figures; the others
    are summed up from their samples.
    """
    if not session_ids:
        return {}
    stored = {
        sid: GpuSummary(peak_memory_mib=peak, energy_wh=energy)
        for sid, peak, energy in db.execute(
            select(
                SessionRecord.id, SessionRecord.gpu_peak_memory_mib, SessionRecord.gpu_energy_wh
            ).where(SessionRecord.id.in_(session_ids), SessionRecord.gpu_summary_at.is_not(None))
        )
    }
    rest = [sid for sid in session_ids if sid not in stored]
    return {**sample_summaries(db, rest), **stored}


def sample_summaries(db: Session, session_ids: Sequence[str]) -> dict[str, GpuSummary]:
    """Peak memory and energy of each session that has samples, from its samples.

    Energy per device comes from NVML's energy counter (last - first, i.e. max - min of a
    counter that only grows while the driver stays loaded); for a device without a counter,
    from the integral of its power over time. On MIG instances the counter is the parent
    GPU's, so the energy is the whole GPU's.
    """
    if not session_ids:
        return {}
    rows = db.execute(
        select(
            GpuSample.session_id,
            GpuSample.device,
            func.max(GpuSample.memory_used_mib),
            func.min(GpuSample.energy_j),
            func.max(GpuSample.energy_j),
        )
        .where(GpuSample.session_id.in_(session_ids))
        .group_by(GpuSample.session_id, GpuSample.device)
    ).all()
    peak: dict[str, int] = {}
    joules: dict[str, float] = {}
    by_power: list[tuple[str, str]] = []
    for sid, device, memory, first, last in rows:
        peak[sid] = max(peak.get(sid, 0), int(memory))
        if first is not None and last is not None:
            joules[sid] = joules.get(sid, 0.0) + (last - first)
        else:
            by_power.append((sid, device))
    for sid, device in by_power:
        readings = db.execute(
            select(GpuSample.at, GpuSample.power_w)
            .where(
                GpuSample.session_id == sid,
                GpuSample.device == device,
                GpuSample.power_w.is_not(None),
            )
            .order_by(GpuSample.at)
        ).all()
        if len(readings) >= 2:
            joules[sid] = joules.get(sid, 0.0) + power_integral(readings)
    return {
        sid: GpuSummary(
            peak_memory_mib=peak[sid],
            energy_wh=round(joules[sid] / 3600, 4) if sid in joules else None,
        )
        for sid in peak
    }


def power_integral(readings: Sequence[tuple[dt.datetime, float]]) -> float:
    """Joules: the trapezoid rule over (time, watts) readings in time order."""
    total = 0.0
    for (t0, p0), (t1, p1) in itertools.pairwise(readings):
        total += (p0 + p1) / 2 * max((t1 - t0).total_seconds(), 0.0)
    return total
