"""Which devices of an inventory a profile may take, given what is booked already.

Pure functions over :class:`~gpuaf.gpus.Inventory`, used by the local backend to
assign devices and to answer "how many could start now".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpuaf.gpus import Device, Inventory
from gpuaf.profiles import SliceProfile


@dataclass(frozen=True)
class Booking:
    profile: str
    kind: str
    devices: tuple[str, ...]
    mps_percentage: int = 0


def model_fits(profile: SliceProfile, device: Device) -> bool:
    """Does the device belong to one of the GPU models the profile accepts?"""
    if not profile.gpu_models:
        return True
    parent_name = device.name.split(" MIG ", 1)[0]
    return any(parent_name == m.device_name for m in profile.models())


def allocate(
    profile: SliceProfile, inventory: Inventory, bookings: Iterable[Booking]
) -> tuple[str, ...] | None:
    """Device ids for one more job of this profile, or None if it cannot start now."""
    bookings = list(bookings)
    whole = {d for b in bookings if b.kind in ("gpu", "mig") for d in b.devices}
    mps_use: dict[str, int] = {}
    for b in bookings:
        if b.kind == "mps":
            for d in b.devices:
                mps_use[d] = mps_use.get(d, 0) + b.mps_percentage
    candidates = [d for d in inventory.devices if model_fits(profile, d) and d.id not in whole]
    if profile.kind == "cpu":
        return ()
    if profile.kind == "mig":
        mig = [d for d in candidates if d.mig_profile == profile.mig_profile]
        return (mig[0].id,) if mig else None
    plain = [d for d in candidates if not d.is_mig]
    if profile.kind == "gpu":
        unshared = [d for d in plain if d.id not in mps_use]
        return (
            tuple(d.id for d in unshared[: profile.gpus]) if len(unshared) >= profile.gpus else None
        )
    pct = profile.mps_thread_percentage or 100
    shareable = [d for d in plain if mps_use.get(d.id, 0) + pct <= 100]
    if not shareable:
        return None
    # pack shares onto the busiest GPU first, keeping whole GPUs free for whole-GPU jobs
    best = max(shareable, key=lambda d: mps_use.get(d.id, 0))
    return (best.id,)


def count_startable(
    profile: SliceProfile, inventory: Inventory, bookings: Iterable[Booking], limit: int
) -> int:
    """How many jobs of this profile could start one after another, at most ``limit``."""
    booked = list(bookings)
    n = 0
    while n < limit:
        devices = allocate(profile, inventory, booked)
        if devices is None:
            break
        booked.append(
            Booking(profile.name, profile.kind, devices, profile.mps_thread_percentage or 0)
        )
        n += 1
    return n
