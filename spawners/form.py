"""The spawn form: every slice the facility offers, with what is free right now.

Slices the user's groups may book are selectable; the others are shown disabled with
the groups they are for. Slices the facility's hardware cannot serve at all are left
out and counted in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpuaf.facility import Facility
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends import Availability
from gpuaf.templates import render
from gpuaf.units import format_duration


@dataclass(frozen=True)
class FormRow:
    profile: SliceProfile
    availability: Availability
    allowed: bool

    @property
    def bookable(self) -> bool:
        return self.allowed

    @property
    def free_text(self) -> str:
        a = self.availability
        text = f"{a.free} free · {a.waiting} waiting"
        if a.busy:
            text += f" · {a.busy} in use"
        if a.free == 0 and a.eta_s:
            text += f" · estimated wait {format_duration(a.eta_s)}"
        elif a.free == 0:
            text += " · you will queue"
        return text

    @property
    def locked_text(self) -> str:
        return "for " + ", ".join(self.profile.groups) + " only"


async def form_rows(facility: Facility, user_groups: Sequence[str]) -> list[FormRow]:
    """Rows for the profiles the facility can serve at all (capacity > 0)."""
    profiles = facility.settings.profiles
    allowed = {p.name for p in facility.settings.profiles_for(list(user_groups))}
    table = await facility.availability(profiles)
    return [
        FormRow(p, table[p.name], p.name in allowed) for p in profiles if table[p.name].capacity
    ]


async def render_form(facility: Facility, user_groups: Sequence[str]) -> str:
    rows = await form_rows(facility, user_groups)
    bookable = [r for r in rows if r.bookable]
    first = next((r for r in bookable if r.availability.free), bookable[0] if bookable else None)
    hidden = len(facility.settings.profiles) - len(rows)
    return render(
        "forms/slices.html",
        rows=rows,
        checked=first.profile.name if first else None,
        hidden=hidden,
        simulated=facility.backend.simulated,
        any_bookable=bool(bookable),
    )
