"""Admins' edits of a group: its quota and the slices it may book, kept in the ledger.

The settings file stays the starting point; an edit replaces, for one group, its
``concurrent_slices``, ``gpu_hours_per_month`` and the set of profiles it may book.
:func:`apply` lays the stored edits over the settings; every process (hub, portal API)
reads them again every few seconds through :class:`gpuaf.facility.Facility`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select

from gpuaf.errors import PublicError
from gpuaf.ledger import Ledger
from gpuaf.ledger.models import GroupSetting, utcnow
from gpuaf.settings import Settings

MAX_SLICES = 10_000
MAX_HOURS = 10_000_000.0


@dataclass(frozen=True)
class GroupEdit:
    concurrent_slices: int | None
    gpu_hours_per_month: float | None
    profiles: tuple[str, ...]


def read(ledger: Ledger) -> dict[str, GroupEdit]:
    with ledger.session() as db:
        return {
            row.name: GroupEdit(
                row.concurrent_slices, row.gpu_hours_per_month, tuple(row.profiles or ())
            )
            for row in db.scalars(select(GroupSetting))
        }


def allowed_profiles(settings: Settings, group: str) -> list[str]:
    return [p.name for p in settings.profiles if not p.groups or group in p.groups]


def apply(settings: Settings, edits: dict[str, GroupEdit]) -> Settings:
    """The settings with the edits of groups it knows laid over them (no edits: the same)."""
    edits = {g: e for g, e in edits.items() if g in settings.groups}
    if not edits:
        return settings
    groups = dict(settings.groups)
    for name, edit in edits.items():
        quota = groups[name].quota.model_copy(
            update={
                "concurrent_slices": edit.concurrent_slices,
                "gpu_hours_per_month": edit.gpu_hours_per_month,
            }
        )
        groups[name] = groups[name].model_copy(update={"quota": quota})
    everyone = list(settings.groups)
    profiles = []
    for p in settings.profiles:
        members = set(p.groups or everyone)
        for name, edit in edits.items():
            (members.add if p.name in edit.profiles else members.discard)(name)
        same = members == set(p.groups or everyone)
        new = p.groups if same else sorted(members) or ["(nobody)"]
        profiles.append(p if same else p.model_copy(update={"groups": new}))
    return settings.model_copy(update={"groups": groups, "profiles": profiles})


def _count(text: str, what: str, top: float, kind=int):
    text = text.strip()
    if not text:
        return None  # no limit
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not 0 <= value <= top:
        raise PublicError(
            f"{what} must be a number from 0 to {top:g}, or empty for no limit (got {text!r})."
        )
    return value


def check(settings: Settings, group: str, form: dict[str, list[str]]) -> GroupEdit:
    """The edit a form asks for, every value checked; a PublicError says what is allowed."""
    if group not in settings.groups:
        known = ", ".join(sorted(settings.groups))
        raise PublicError(f"There is no group {group!r}. Groups: {known}.", status=404)
    slices = _count((form.get("concurrent_slices") or [""])[0], "Sessions at once", MAX_SLICES)
    hours = _count((form.get("gpu_hours_per_month") or [""])[0], "GPU-hours a month",
                   MAX_HOURS, float)  # fmt: skip
    names = form.get("profiles") or []
    known = [p.name for p in settings.profiles]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise PublicError(
            f"Unknown slice profile(s) {', '.join(unknown)}. Profiles: {', '.join(known)}."
        )
    return GroupEdit(slices, hours, tuple(n for n in known if n in names))


def save(ledger: Ledger, group: str, edit: GroupEdit, who: str) -> None:
    with ledger.session() as db:
        row = db.get(GroupSetting, group) or GroupSetting(name=group)
        row.concurrent_slices, row.gpu_hours_per_month = (
            edit.concurrent_slices,
            edit.gpu_hours_per_month,
        )
        row.profiles, row.updated_by, row.updated_at = list(edit.profiles), who, utcnow()
        db.add(row)
