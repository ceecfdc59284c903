"""The facility a process serves: settings, the batch backend and the ledger, built once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy.exc import SQLAlchemyError

from gpuaf.ledger import Ledger
from gpuaf.profiles import SliceProfile
from gpuaf.settings import Settings, load_settings
from gpuaf.spawners.backends import Availability, Backend, make_backend

AVAILABILITY_TTL_S = 5.0
EDITS_TTL_S = 5.0


@dataclass
class Facility:
    base_settings: Settings  # the settings file's
    backend: Backend
    ledger: Ledger
    _cache: tuple[float, dict[str, Availability]] | None = field(default=None, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _effective: tuple[float, Settings] | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The settings with the admins' group edits laid over them (read every few s)."""
        now = time.monotonic()
        if self._effective is None or now - self._effective[0] > EDITS_TTL_S:
            from gpuaf import group_edits

            try:
                edits = group_edits.read(self.ledger)
            except SQLAlchemyError:  # a ledger not migrated yet: the file's settings
                edits = {}
            self._effective = (now, group_edits.apply(self.base_settings, edits))
        return self._effective[1]

    def forget_settings(self) -> None:
        self._effective = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Facility:
        return cls(
            settings,
            make_backend(settings),
            Ledger(settings.ledger_url, settings.ledger.password_file),
        )

    async def availability(
        self, profiles: Sequence[SliceProfile] | None = None, fresh: bool = False
    ) -> dict[str, Availability]:
        """Availability of every profile, cached briefly: many open forms cost one query."""
        async with self._lock:
            now = time.monotonic()
            if fresh or self._cache is None or now - self._cache[0] > AVAILABILITY_TTL_S:
                self._cache = (now, await self.backend.availability(self.settings.profiles))
            table = self._cache[1]
        names = [p.name for p in profiles] if profiles is not None else list(table)
        return {name: table[name] for name in names}

    def forget_availability(self) -> None:
        self._cache = None


@cache
def facility_for(settings_path: str | None) -> Facility:
    """The one Facility of this process for a settings file (None: $GPUAF_SETTINGS/defaults)."""
    return Facility.from_settings(load_settings(settings_path))
