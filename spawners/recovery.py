"""How a session ends when nobody ends it: restarts, starts that will not finish, and
sessions nobody connects to. Each frees the slice and says why in the ledger."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import sqlalchemy

from gpuaf.units import format_duration


class RecoveryMixin:
    """For SliceSpawner: ``job_id``, ``server_host``, ``up_since``, ``facility``, ``_record``."""

    async def _abandon(self, why: str, final: str = "failed") -> None:
        """End a start that will not finish: say why, remove its job, free its slice."""
        await self._record("stopping", why)
        await self.facility.backend.cancel(self.job_id)
        self.facility.forget_availability()
        await self._record(final, why)

    def _unclaimed(self) -> bool:
        """Up for longer than sessions.connect_timeout, and nobody has connected to it."""
        limit = self.facility.settings.sessions.connect_timeout
        if self._spawn_pending:  # the hub waits for the server to answer: nobody could connect
            return False
        if not (limit and self.up_since and self.server) or time.time() - self.up_since < limit:
            return False
        orm = self.orm_spawner
        client = getattr(orm, "oauth_client", None)
        if client is not None and client.access_tokens:
            return False  # a browser logged in to the server
        last = getattr(orm, "last_activity", None)  # only the session agent's reports move it
        return not (last and last.replace(tzinfo=dt.UTC).timestamp() > self.up_since + 5)

    async def _release_unclaimed(self) -> int:
        why = "released: nobody connected within " + format_duration(
            self.facility.settings.sessions.connect_timeout
        )
        await self._record("stopping", why)
        await self.facility.backend.cancel(self.job_id)
        self.facility.forget_availability()
        await self._record("stopped", why)
        await asyncio.to_thread(
            self.facility.ledger.audit, self.user.name, "session.released",
            f"{self.user.name}/{self.name}", session=self.session_id, reason="not connected",
        )  # fmt: skip
        self.job_id = ""
        return 0

    def _start_completed(self) -> bool:
        return bool(self.server_host)  # recorded in the hub's database once the server is up

    async def _end_interrupted_start(self) -> int:
        """The hub stopped during this session's start: free the slice, say so, start afresh."""
        await self._abandon(
            "the hub restarted while this session was starting; its job was removed so that "
            "it does not hold a slice. Start the session again."
        )
        self.job_id = ""
        return 1

    async def get_url(self) -> str:
        """After a hub restart: where the server listens, from the state kept in the database."""
        url = await super().get_url()
        if self.server_host and self.port and self.server and not self.server.port:
            return f"http://{self.server_host}:{self.port}"
        return url

    def _save_state(self) -> None:
        """Write this spawner's state to the hub's database now, not only after the start."""
        db = sqlalchemy.inspect(self.orm_spawner).session if self.orm_spawner else None
        if db is not None:
            self.orm_spawner.state = self.get_state()
            db.commit()
