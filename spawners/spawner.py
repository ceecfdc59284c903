"""SliceSpawner: a thin JupyterHub adapter that books a slice through a backend.

Profile pipeline: the form lists the profiles with live availability → ``options_from_form``
/ ``apply_user_options`` validate the choice (an unknown slice is a 400 listing the valid
ones) → ``start`` submits the session job, reports progress in words a physicist
understands, and returns where the server listens.
"""

from __future__ import annotations

import asyncio
import os
import time

from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Float, Unicode, default

from gpuaf.errors import PublicError, UnknownSlice
from gpuaf.facility import Facility, facility_for
from gpuaf.ledger.sessions import open_session, set_state, stop_reason
from gpuaf.policy import QuotaExceeded, check_booking
from gpuaf.profiles import SliceProfile
from gpuaf.settings import ENV_VAR
from gpuaf.spawners.backends import JobState, JobStatus
from gpuaf.spawners.form import render_form
from gpuaf.spawners.progress import ProgressMixin
from gpuaf.spawners.recovery import RecoveryMixin
from gpuaf.spawners.session_job import accounting_group, session_job
from gpuaf.units import format_duration

STATE_KEYS = ("job_id", "profile_name", "session_id", "server_host", "up_since")


class SpawnFailed(Exception):
    """A failed spawn: ``jupyterhub_message`` is what the user reads, str() is for the log."""

    def __init__(self, message: str, log_message: str = ""):
        super().__init__(log_message or message)
        self.jupyterhub_message = message


class SliceSpawner(ProgressMixin, RecoveryMixin, Spawner):
    settings_file = Unicode(
        "", config=True, help="gpuaf settings; empty: $GPUAF_SETTINGS or the embedded defaults."
    )
    status_interval = Float(0.5, config=True, help="Seconds between status checks at start.")

    job_id = Unicode("")
    profile_name = Unicode("")
    session_id = Unicode("")
    server_host = Unicode("")  # where the server listens, once known: kept in the hub's database
    up_since = Float(0.0)  # first poll after the hub saw the server answer (epoch seconds)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events: list[dict] = []
        self._new_event = asyncio.Event()
        self.port_reported = asyncio.Event()
        self._background: asyncio.Task | None = None
        self._wait_estimate: str | None = None  # worked out once per start

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]  # never the hub's secrets

    @property
    def facility(self) -> Facility:
        return facility_for(self.settings_file or os.environ.get(ENV_VAR) or None)

    def user_groups(self) -> list[str]:
        return sorted(g.name for g in self.user.groups) if self.user else []

    def allowed_profiles(self) -> list[SliceProfile]:
        return self.facility.settings.profiles_for(self.user_groups())

    # -- profile pipeline --------------------------------------------------
    @default("options_form")
    def _options_form_default(self):
        return _render_options_form

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        chosen = (formdata.get("profile") or [""])[0]
        self._resolve(chosen)
        return {"profile": chosen}

    @default("apply_user_options")
    def _apply_default(self):
        return _apply_user_options

    def _resolve(self, name: object) -> SliceProfile:
        allowed = self.allowed_profiles()
        profile = next((p for p in allowed if p.name == name), None)
        if profile is None:
            err = UnknownSlice(str(name), [p.name for p in allowed])
            raise web.HTTPError(400, err.message, reason="Unknown slice profile")
        return profile

    async def _record(self, state: str, reason: str = "", **fields) -> None:
        if self.session_id:
            await asyncio.to_thread(
                set_state, self.facility.ledger, self.session_id, state, reason, **fields
            )

    # -- life cycle --------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        began = time.monotonic()  # the hub's start_timeout runs from here
        facility = self.facility
        backend = facility.backend
        allowed = self.allowed_profiles()
        profile = self._resolve(self.profile_name or (allowed[0].name if allowed else ""))
        self.profile_name = profile.name
        self._events.clear()
        self._wait_estimate = None
        self.port_reported.clear()
        who, where = self.user.name, f"{self.user.name}/{self.name}"
        self.session_id = await asyncio.to_thread(
            open_session, facility.ledger, user=who, server=self.name, profile=profile.name,
            backend=backend.name, gpu_share=profile.gpu_share,
            group=accounting_group(self.user_groups(), profile),
        )  # fmt: skip
        await asyncio.to_thread(
            facility.ledger.audit, who, "session.book", where, profile=profile.name,
            session=self.session_id,
        )  # fmt: skip
        self._emit(5, f"Booking a {profile.display_name} slice ({profile.summary()})")
        remote = backend.reports_port
        if remote:
            self.ip, self.port = "0.0.0.0", 0  # noqa: S104 - the job listens on its node
        else:
            self.port = random_port()
        spec = session_job(
            settings=facility.settings, profile=profile, user=who,
            user_groups=self.user_groups(), session_id=self.session_id, env=self.get_env(),
            args=self.get_args(), port=self.port, remote=remote,
        )  # fmt: skip
        try:
            self.job_id = await backend.submit(spec)
        except PublicError as exc:
            await self._record("failed", exc.message)
            raise SpawnFailed(exc.message, exc.log_message) from exc
        facility.forget_availability()
        self._save_state()  # a hub killed from here on finds the job in its database
        await self._record("queued", "submitted to the batch system", job_id=self.job_id)
        self._emit(15, f"Submitted to {backend.name} as job {self.job_id}")
        try:
            return await self._until_up(profile, remote)
        except asyncio.CancelledError:  # the hub gave up (start_timeout), or a stop was asked
            if time.monotonic() - began >= self.start_timeout - 1:
                await self._abandon(
                    f"The session did not start within {format_duration(int(self.start_timeout))}"
                    "; its job was removed so that it does not hold a place in the queue or a "
                    "slice."
                )
            else:
                await self._abandon("stopped before it started; its job was removed", "stopped")
            raise

    async def _until_up(self, profile: SliceProfile, remote: bool) -> tuple[str, int]:
        backend = self.facility.backend
        status = await self._wait_running(profile)
        gpus = ", ".join(status.gpus) or "none"
        sim = " (simulated)" if status.gpus and backend.simulated else ""
        await self._record(
            "starting", "job running; server starting", node=status.host,
            gpu_ids=list(status.gpus),
        )  # fmt: skip
        self._emit(60, f"Matched to node {status.host}, GPUs: {gpus}{sim}")
        if remote:
            self._emit(70, "Starting the container and JupyterLab on the node")
            await self._wait_port()
        self.server_host = status.host or "127.0.0.1"
        self._save_state()
        self._emit(85, "Server up; connecting")
        return (self.server_host, self.port)

    async def _wait_running(self, profile: SliceProfile) -> JobStatus:
        backend = self.facility.backend
        while True:
            status = (await backend.status([self.job_id]))[self.job_id]
            if status.state == JobState.RUNNING:
                return status
            if status.state == JobState.PENDING:
                self._emit(25, await self._queued_message(profile, status))
            elif status.state.final or status.state == JobState.HELD:
                await self._fail_job(status)
            await asyncio.sleep(self.status_interval)

    async def _fail_job(self, status: JobStatus) -> None:
        if status.state == JobState.HELD:
            await self.facility.backend.cancel(self.job_id)
            why = (status.reason or "no reason given").rstrip(".")
            message = (
                f"The batch system held the job: {why}. "
                "The job was removed; nothing is left running."
            )
        else:
            message = status.reason or f"The job ended before the server started ({status.state})."
        await self._record("failed", message)
        raise SpawnFailed(message)

    async def _wait_port(self) -> None:
        backend = self.facility.backend
        while not self.port_reported.is_set():
            status = (await backend.status([self.job_id]))[self.job_id]
            if status.state != JobState.RUNNING:
                await self._fail_job(status)
            try:
                await asyncio.wait_for(self.port_reported.wait(), timeout=1.0)
            except TimeoutError:
                continue

    def start_polling(self) -> None:
        """Called by the hub once start() returned, before it has seen the server answer."""
        super().start_polling()
        self._background = asyncio.get_running_loop().create_task(
            self._record("running", "server up")
        )

    async def poll(self) -> int | None:
        if not self.job_id:
            return 0
        status = (await self.facility.backend.status([self.job_id]))[self.job_id]
        if status.state in (JobState.RUNNING, JobState.PENDING):
            if not self._spawn_pending and not self._start_completed():
                return await self._end_interrupted_start()
            if not self._spawn_pending and not self.up_since:
                # the hub has seen the server answer: from now on someone could connect
                self.up_since = time.time()
                self._save_state()
            if self._unclaimed():
                return await self._release_unclaimed()
            if self.server:
                await self._record("running", "server up")
            return None
        final = "lost" if status.state == JobState.UNKNOWN else "stopped"
        await self._record(final, status.reason or f"job {status.state}")
        return status.exit_code if status.exit_code is not None else 1

    async def stop(self, now: bool = False) -> None:
        if not self.job_id:
            return
        await self._record("stopping", "stop asked")
        await self.facility.backend.cancel(self.job_id)
        self.facility.forget_availability()
        # an admin who stopped it gave a reason (gpuaf.api.routes.admin): the user reads it
        given = await asyncio.to_thread(stop_reason, self.facility.ledger, self.session_id)
        await self._record("stopped", given or "stopped")
        if self.session_id:
            await asyncio.to_thread(
                self.facility.ledger.audit, self.user.name, "session.stop",
                f"{self.user.name}/{self.name}", session=self.session_id,
            )  # fmt: skip

    # -- state -------------------------------------------------------------
    def get_state(self) -> dict:
        state = super().get_state()
        for key in STATE_KEYS:
            if getattr(self, key):
                state[key] = getattr(self, key)
        if self.server_host and self.port:
            state["port"] = self.port
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        for key in STATE_KEYS:
            setattr(self, key, state.get(key, 0.0 if key == "up_since" else ""))
        if state.get("port"):
            self.port = int(state["port"])

    def clear_state(self) -> None:
        super().clear_state()
        self.job_id = ""
        self.session_id = ""
        self.server_host = ""
        self.up_since = 0.0


async def _render_options_form(spawner: SliceSpawner) -> str:
    return await render_form(spawner.facility, spawner.user_groups())


async def _apply_user_options(spawner: SliceSpawner, user_options: dict) -> None:
    """Validate the chosen slice and the user's quota before anything is booked."""
    allowed = spawner.allowed_profiles()
    default = allowed[0].name if allowed else ""
    profile = spawner._resolve(user_options.get("profile", default) if user_options else default)
    spawner.profile_name = profile.name
    facility = spawner.facility
    try:
        await asyncio.to_thread(
            check_booking, facility.settings, facility.ledger, spawner.user.name,
            spawner.user_groups(), profile, spawner.name,
        )  # fmt: skip
    except QuotaExceeded as exc:
        await asyncio.to_thread(
            facility.ledger.audit, spawner.user.name, "session.refused",
            f"{spawner.user.name}/{spawner.name}", profile=profile.name, reason=exc.message,
        )  # fmt: skip
        raise web.HTTPError(exc.status, exc.message, reason="Quota exceeded") from exc
