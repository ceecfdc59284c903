"""The spawn form: the profiles a user may book, with what is free right now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpuaf.spawners.backends import Availability
from gpuaf.templates import render

from gpuaf.facility import Facility
from gpuaf.profiles import SliceProfile


@dataclass(frozen=True)
class FormRow:
    profile: SliceProfile
    availability: Availability

    @property
    def bookable(self) -> bool:
        return self.availability.free > 0

    @property
    def free_text(self) -> str:
        a = self.availability
        if a.free == 0:
            return f"none free now · {a.busy} in use"
        return f"{a.free} free now · {a.busy} in use"


async def form_rows(facility: Facility, profiles: Sequence[SliceProfile]) -> list[FormRow]:
    """Rows for the profiles the facility can serve at all (capacity > 0)."""
    table = await facility.availability(profiles)
    return [FormRow(p, table[p.name]) for p in profiles if table[p.name].capacity > 0]


async def render_form(facility: Facility, profiles: Sequence[SliceProfile]) -> str:
    rows = await form_rows(facility, profiles)
    first = next((r.profile.name for r in rows if r.bookable), None)
    hidden = len(profiles) - len(rows)
    return render(
        "forms/slices.html",
        rows=rows,
        checked=first,
        hidden=hidden,
        simulated=facility.backend.simulated,
    )
