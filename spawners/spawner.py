"""SliceSpawner: a thin JupyterHub adapter that books a slice through a backend.

Profile pipeline: the form lists the profiles the user may book with live
availability → ``options_from_form``/``apply_user_options`` validate the choice (an
unknown slice is a 400 listing the valid ones) → ``start`` submits a job built from
the profile, reports progress, and returns where the server listens.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from gpuaf.spawners.backends import JobSpec, JobState
from gpuaf.spawners.form import render_form
from jupyterhub.spawner import Spawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Float, Unicode, default

from gpuaf.errors import PublicError, UnknownSlice
from gpuaf.facility import Facility, facility_for
from gpuaf.ledger.sessions import open_session, set_state
from gpuaf.profiles import SliceProfile
from gpuaf.settings import ENV_VAR


class SpawnFailed(Exception):
    """A failed spawn: ``jupyterhub_message`` is what the user reads, str() is for the log."""

    def __init__(self, message: str, log_message: str = ""):
        super().__init__(log_message or message)
        self.jupyterhub_message = message


class SliceSpawner(Spawner):
    settings_file = Unicode(
        "",
        config=True,
        help="gpuaf settings file; empty means $GPUAF_SETTINGS or the embedded defaults.",
    )
    status_interval = Float(0.5, config=True, help="Seconds between status checks while starting.")

    job_id = Unicode("")
    profile_name = Unicode("")
    session_id = Unicode("")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events: list[dict] = []
        self._background: asyncio.Task | None = None
        self._new_event = asyncio.Event()

    # -- facility ----------------------------------------------------------
    @property
    def facility(self) -> Facility:
        return facility_for(self.settings_file or os.environ.get(ENV_VAR) or None)

    def allowed_profiles(self) -> list[SliceProfile]:
        groups = [g.name for g in self.user.groups] if self.user else []
        return self.facility.settings.profiles_for(groups)

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
        valid = [p.name for p in allowed]
        profile = next((p for p in allowed if p.name == name), None)
        if profile is None:
            err = UnknownSlice(str(name), valid)
            raise web.HTTPError(400, err.message, reason="Unknown slice profile")
        return profile

    # -- life cycle --------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        self._events.append({"progress": progress, "message": message})
        self._new_event.set()

    async def progress(self) -> AsyncIterator[dict]:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if self._spawn_pending_done():
                return
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), timeout=1.0)
            except TimeoutError:
                continue

    def _spawn_pending_done(self) -> bool:
        return not self._spawn_pending and bool(self._events)

    async def start(self) -> tuple[str, int]:
        facility = self.facility
        settings = facility.settings
        allowed = self.allowed_profiles()
        profile = self._resolve(self.profile_name or (allowed[0].name if allowed else ""))
        self.profile_name = profile.name
        self._events.clear()
        ledger, backend = facility.ledger, facility.backend
        self.session_id = await asyncio.to_thread(
            open_session,
            ledger,
            user=self.user.name,
            server=self.name,
            profile=profile.name,
            backend=backend.name,
        )
        await asyncio.to_thread(
            ledger.audit,
            self.user.name,
            "session.book",
            f"{self.user.name}/{self.name}",
            profile=profile.name,
            session=self.session_id,
        )
        self._emit(10, f"Booking a {profile.display_name} slice ({profile.summary()})")
        self.port = random_port()
        spec = self._job_spec(profile, settings.data_dir)
        try:
            self.job_id = await backend.submit(spec)
        except PublicError as exc:
            await asyncio.to_thread(set_state, ledger, self.session_id, "failed", exc.message)
            raise SpawnFailed(exc.message, exc.log_message) from exc
        facility.forget_availability()
        await asyncio.to_thread(
            set_state,
            ledger,
            self.session_id,
            "queued",
            "submitted to the batch system",
            job_id=self.job_id,
        )
        self._emit(30, f"Submitted as job {self.job_id}; waiting for it to start")
        status = await self._wait_running()
        gpus = ", ".join(status.gpus) or "none"
        sim = " (simulated)" if status.gpus and backend.simulated else ""
        await asyncio.to_thread(
            set_state,
            ledger,
            self.session_id,
            "starting",
            "job running; server starting",
            node=status.host,
            gpu_ids=list(status.gpus),
        )
        self._emit(70, f"Running on {status.host}, GPUs: {gpus}{sim}; starting JupyterLab")
        return (status.host or "127.0.0.1", self.port)

    async def _wait_running(self):
        backend = self.facility.backend
        while True:
            status = (await backend.status([self.job_id]))[self.job_id]
            if status.state == JobState.RUNNING:
                return status
            if status.state.final or status.state == JobState.HELD:
                message = status.reason or f"The job ended ({status.state})."
                await asyncio.to_thread(
                    set_state, self.facility.ledger, self.session_id, "failed", message
                )
                if status.state == JobState.HELD:
                    await backend.cancel(self.job_id)
                raise SpawnFailed(message)
            await asyncio.sleep(self.status_interval)

    def _job_spec(self, profile: SliceProfile, data_dir: Path) -> JobSpec:
        settings = self.facility.settings
        home = data_dir / "homes" / self.user.name
        home.mkdir(parents=True, exist_ok=True)
        env = self.get_env()
        env.update(HOME=str(home), GPUAF_SESSION_ID=self.session_id, GPUAF_PROFILE=profile.name)
        cmd = [
            _resolve_cmd(settings.sessions.singleuser_cmd[0]),
            *settings.sessions.singleuser_cmd[1:],
            *self.get_args(),
        ]
        cmd += ["--ip=127.0.0.1", f"--port={self.port}", f"--ServerApp.root_dir={home}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        return JobSpec(
            name=f"gpuaf-{self.session_id}",
            user=self.user.name,
            profile=profile,
            command=tuple(cmd),
            env=env,
            workdir=home,
            tags={
                "portal": "gpuaf",
                "user": self.user.name,
                "session": self.session_id,
                "profile": profile.name,
            },
        )

    def start_polling(self) -> None:
        """Called by the hub once the server answers: the session is running."""
        super().start_polling()
        if self.session_id:
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(
                    set_state, self.facility.ledger, self.session_id, "running", "server up"
                )
            )
            self._background = task  # keep a reference until it is done

    async def poll(self) -> int | None:
        if not self.job_id:
            return 0
        status = (await self.facility.backend.status([self.job_id]))[self.job_id]
        if status.state in (JobState.RUNNING, JobState.PENDING):
            if self.session_id and self.server:
                await asyncio.to_thread(
                    set_state, self.facility.ledger, self.session_id, "running", "server up"
                )
            return None
        if self.session_id:
            final = "lost" if status.state == JobState.UNKNOWN else "stopped"
            await asyncio.to_thread(
                set_state,
                self.facility.ledger,
                self.session_id,
                final,
                status.reason or f"job {status.state}",
            )
        return status.exit_code if status.exit_code is not None else 1

    async def stop(self, now: bool = False) -> None:
        if not self.job_id:
            return
        ledger = self.facility.ledger
        if self.session_id:
            await asyncio.to_thread(set_state, ledger, self.session_id, "stopping", "stop asked")
        await self.facility.backend.cancel(self.job_id)
        self.facility.forget_availability()
        if self.session_id:
            await asyncio.to_thread(set_state, ledger, self.session_id, "stopped", "stopped")
            await asyncio.to_thread(
                ledger.audit,
                self.user.name,
                "session.stop",
                f"{self.user.name}/{self.name}",
                session=self.session_id,
            )

    # -- state -------------------------------------------------------------
    def get_state(self) -> dict:
        state = super().get_state()
        for key in ("job_id", "profile_name", "session_id"):
            if getattr(self, key):
                state[key] = getattr(self, key)
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        for key in ("job_id", "profile_name", "session_id"):
            setattr(self, key, state.get(key, ""))

    def clear_state(self) -> None:
        super().clear_state()
        self.job_id = ""
        self.session_id = ""


async def _render_options_form(spawner: SliceSpawner) -> str:
    return await render_form(spawner.facility, spawner.allowed_profiles())


def _apply_user_options(spawner: SliceSpawner, user_options: dict) -> None:
    spawner.profile_name = (
        spawner._resolve(user_options.get("profile", "")).name if user_options else ""
    )


def _resolve_cmd(name: str) -> str:
    """Find a command next to this Python first (the portal's own environment), then on PATH."""
    if os.path.isabs(name):
        return name
    here = str(Path(sys.executable).parent)
    return shutil.which(name, path=os.pathsep.join([here, os.environ.get("PATH", "")])) or name
