"""What a starting session tells its user: progress events, place in the queue, wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gpuaf.ledger.sessions import typical_wait
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends import JobStatus
from gpuaf.units import approx_duration


class ProgressMixin:
    """For SliceSpawner: ``self._events``, ``self._new_event``, ``self.facility``."""

    def _emit(self, progress: int, message: str) -> None:
        if self._events and self._events[-1]["message"] == message:
            return
        self._events.append({"progress": progress, "message": message})
        self._new_event.set()

    async def progress(self) -> AsyncIterator[dict]:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not self._spawn_pending and self._events:
                return
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), timeout=1.0)
            except TimeoutError:
                continue

    async def _queued_message(self, profile: SliceProfile, status: JobStatus) -> str:
        where = f"position {status.queue_position} " if status.queue_position else ""
        reason = f" ({status.reason})" if status.reason else ""
        return (
            f"Queued: {where}among jobs waiting for {profile.display_name}"
            f"{await self._estimate(profile)}{reason}"
        )

    async def _estimate(self, profile: SliceProfile) -> str:
        """The batch system's estimate of the wait, or the median of this slice's recent ones."""
        if self._wait_estimate is None:
            table = await self.facility.availability([profile])
            eta = table[profile.name].eta_s
            if eta:
                self._wait_estimate = f"; estimated wait {approx_duration(eta)}"
            else:
                typical = await asyncio.to_thread(typical_wait, self.facility.ledger, profile.name)
                self._wait_estimate = (
                    f"; typical wait {approx_duration(typical[0])} "
                    f"(median of the last {typical[1]} starts of this slice)"
                    if typical
                    else ""
                )
        return self._wait_estimate
