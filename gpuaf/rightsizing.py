"""A right-sizing hint from measured use: would a smaller slice have served?

From a user's last sessions on GPU slices that reported samples: their peak GPU memory
and mean utilisation. The smallest slice the user may book whose GPU memory holds that
peak with 25 % to spare is suggested when it holds less of a GPU than the slices they
booked. Only measured sessions count; without any, there is no hint.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpuaf.ledger.models import FINAL_STATES, GpuSample, SessionRecord
from gpuaf.ledger.samples import summaries
from gpuaf.profiles import SliceProfile
from gpuaf.units import format_mib

HEADROOM = 1.25
LAST = 5


@dataclass(frozen=True)
class Hint:
    sessions: int
    peak_memory_mib: int
    utilisation_pct: float | None
    booked: str  # the largest profile of those sessions
    suggested: SliceProfile | None  # None: what they booked fits

    def text(self) -> str:
        util = (
            f" and {self.utilisation_pct:.0f} % utilisation"
            if self.utilisation_pct is not None
            else ""
        )
        said = (
            f"Your last {self.sessions} GPU session{'s' if self.sessions != 1 else ''} peaked at "
            f"{format_mib(self.peak_memory_mib)} of GPU memory{util}"
        )
        if self.suggested is None:
            return f"{said}: the slices you booked fit that use."
        mem = capacity_mib(self.suggested)
        return (
            f"{said}: the slice {self.suggested.display_name} ({format_mib(mem)}) would have "
            f"served, at {share_text(self.suggested.gpu_share)} instead of the {self.booked} you "
            "booked."
        )


def share_text(share: float) -> str:
    for n in (7, 4, 2):
        if abs(share * n - round(share * n)) < 1e-6 and share < 1:
            return f"{round(share * n)}/{n} of a GPU"
    return f"{share:g} GPU{'s' if share != 1 else ''}"


def capacity_mib(profile: SliceProfile) -> int | None:
    """GPU memory the slice gives on the smallest GPU it may land on."""
    models = profile.models()
    if not models:
        return None
    if profile.kind == "mig":
        sizes = [
            m.mig[profile.mig_profile].memory_mib for m in models if profile.mig_profile in m.mig
        ]
        return min(sizes) if sizes else None
    if profile.kind == "mps":
        return profile.mps_pinned_memory or min(m.memory_mib for m in models)
    if profile.kind == "gpu":
        return profile.gpus * min(m.memory_mib for m in models)
    return None


def hint_for(
    db: Session, user: str, allowed: list[SliceProfile], by_name: dict[str, SliceProfile]
) -> Hint | None:
    records = list(
        db.scalars(
            select(SessionRecord)
            .where(
                SessionRecord.user_name == user,
                SessionRecord.gpu_share > 0,
                SessionRecord.state.in_(FINAL_STATES),
            )
            .order_by(SessionRecord.created_at.desc())
            .limit(50)
        )
    )
    used = summaries(db, [r.id for r in records])
    measured = [r for r in records if r.id in used][:LAST]
    if not measured:
        return None
    peak = max(used[r.id].peak_memory_mib for r in measured)
    util = db.scalar(
        select(func.avg(GpuSample.utilisation_pct)).where(
            GpuSample.session_id.in_([r.id for r in measured])
        )
    )
    booked = max(measured, key=lambda r: r.gpu_share)
    fitting = [
        p for p in allowed
        if p.kind != "cpu" and (c := capacity_mib(p)) is not None and c >= peak * HEADROOM
    ]  # fmt: skip
    best = min(fitting, key=lambda p: (p.gpu_share, capacity_mib(p)), default=None)
    smaller = best if best is not None and best.gpu_share < booked.gpu_share - 1e-9 else None
    name = by_name[booked.profile].display_name if booked.profile in by_name else booked.profile
    return Hint(len(measured), peak, None if util is None else float(util), name, smaller)
