"""The ``local`` backend: each job is a process on this machine.

For a single-machine trial and the demo. Devices come from NVML, or from an explicit
simulated inventory (clearly labelled as such to the user). Every job leaves a small
record in the state directory, so a restarted hub still knows its jobs: the process
table and those records are the truth, nothing is kept only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psutil

from gpuaf.errors import BackendError
from gpuaf.gpus import Inventory, discover, parse_simulation
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.allocation import Booking, allocate, count_startable
from gpuaf.spawners.backends.base import Availability, Backend, JobSpec, JobState, JobStatus

STOP_GRACE_S = 5.0


class LocalBackend(Backend):
    name = "local"
    reports_port = False

    def __init__(
        self,
        state_dir: Path,
        *,
        max_sessions: int = 8,
        inventory: Inventory | None = None,
        simulate_gpus: str | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.max_sessions = max_sessions
        if inventory is None:
            inventory = parse_simulation(simulate_gpus) if simulate_gpus else discover()
        self.inventory = inventory
        self.simulated = inventory.simulated
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._lock = asyncio.Lock()

    # -- records ---------------------------------------------------------
    def _record_path(self, job_id: str) -> Path:
        return self.state_dir / f"{job_id}.json"

    def _read(self, job_id: str) -> dict | None:
        try:
            return json.loads(self._record_path(job_id).read_text())
        except (OSError, ValueError):
            return None

    def _write(self, job_id: str, record: dict) -> None:
        tmp = self._record_path(job_id).with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._record_path(job_id))

    def _alive(self, record: dict) -> bool:
        try:
            proc = psutil.Process(record["pid"])
            return (
                abs(proc.create_time() - record["create_time"]) < 1.0
                and proc.is_running()
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def _live_bookings(self) -> list[Booking]:
        out = []
        for path in self.state_dir.glob("*.json"):
            record = self._read(path.stem)
            if record and record.get("state") == JobState.RUNNING and self._alive(record):
                out.append(
                    Booking(
                        record["profile"],
                        record["kind"],
                        tuple(record["devices"]),
                        record.get("mps_percentage", 0),
                    )
                )
        return out

    # -- the four calls --------------------------------------------------
    async def submit(self, spec: JobSpec) -> str:
        async with self._lock:  # allocation and start are one step
            bookings = self._live_bookings()
            if len(bookings) >= self.max_sessions:
                raise BackendError(
                    f"This machine runs at most {self.max_sessions} sessions and all are in use.",
                    status=409,
                )
            devices = allocate(spec.profile, self.inventory, bookings)
            if devices is None:
                raise BackendError(
                    f"No {spec.profile.display_name} slice is free right now; "
                    "try again later or pick another slice.",
                    status=409,
                )
            job_id = f"local-{uuid.uuid4().hex[:12]}"
            log_path = self.state_dir / f"{job_id}.log"
            env = {**spec.env, **self._device_env(spec.profile, devices), "GPUAF_JOB_ID": job_id}
            with log_path.open("ab") as log:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *spec.command,
                        env=env,
                        cwd=spec.workdir,
                        stdout=log,
                        stderr=asyncio.subprocess.STDOUT,
                        stdin=asyncio.subprocess.DEVNULL,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise BackendError(
                        "The session could not be started on this machine.",
                        log_message=f"exec {spec.command[0]}: {exc}",
                    ) from exc
            self._procs[job_id] = proc
            self._write(
                job_id,
                {
                    "pid": proc.pid,
                    "create_time": psutil.Process(proc.pid).create_time(),
                    "state": JobState.RUNNING,
                    "user": spec.user,
                    "profile": spec.profile.name,
                    "kind": spec.profile.kind,
                    "devices": list(devices),
                    "mps_percentage": spec.profile.mps_thread_percentage or 0,
                    "simulated": self.inventory.simulated,
                    "tags": dict(spec.tags),
                    "submitted": time.time(),
                },
            )
            asyncio.get_running_loop().create_task(self._reap(job_id, proc))
            return job_id

    async def _reap(self, job_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        record = self._read(job_id)
        if record and record["state"] == JobState.RUNNING:
            record.update(state=JobState.DONE if code == 0 else JobState.FAILED, exit_code=code)
            self._write(job_id, record)
        self._procs.pop(job_id, None)

    def _device_env(self, profile: SliceProfile, devices: tuple[str, ...]) -> dict[str, str]:
        if profile.kind == "cpu":
            return {"CUDA_VISIBLE_DEVICES": ""}
        env = {"CUDA_VISIBLE_DEVICES": ",".join(devices)}
        if self.inventory.simulated:
            env["GPUAF_SIMULATED_GPUS"] = "1"
        if profile.kind == "mps":
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(profile.mps_thread_percentage)
            env["CUDA_MPS_PIPE_DIRECTORY"] = str(self.state_dir / "mps" / devices[0] / "pipe")
            env["CUDA_MPS_LOG_DIRECTORY"] = str(self.state_dir / "mps" / devices[0] / "log")
            if profile.mps_pinned_memory:
                env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={profile.mps_pinned_memory}M"
        return env

    async def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        out = {}
        for job_id in job_ids:
            record = self._read(job_id)
            if record is None:
                out[job_id] = JobStatus(
                    job_id, JobState.UNKNOWN, reason="This machine has no record of the session."
                )
                continue
            state = JobState(record["state"])
            if state == JobState.RUNNING and not self._alive(record) and job_id not in self._procs:
                state = JobState.UNKNOWN
                reason = "The session's process is gone."
            else:
                reason = self._reason(job_id, state, record)
            out[job_id] = JobStatus(
                job_id,
                state,
                "127.0.0.1",
                reason,
                record.get("exit_code"),
                tuple(record["devices"]),
            )
        return out

    def _reason(self, job_id: str, state: JobState, record: dict) -> str:
        if state != JobState.FAILED:
            return ""
        try:
            lines = (self.state_dir / f"{job_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        last = lines[-1].strip() if lines else ""
        return f"The session's server exited with code {record.get('exit_code')}" + (
            f": {last[:300]}" if last else "."
        )

    async def cancel(self, job_id: str) -> None:
        record = self._read(job_id)
        if record is None:
            return
        was_running = record["state"] == JobState.RUNNING
        if self._alive(record):
            await asyncio.to_thread(_terminate_group, record["pid"])
        proc = self._procs.get(job_id)
        if proc is not None:
            await proc.wait()
        if was_running:  # the reaper may have written FAILED for our own SIGTERM
            record = self._read(job_id) or record
            record["state"] = JobState.CANCELLED
            self._write(job_id, record)

    async def availability(self, profiles: Sequence[SliceProfile]) -> dict[str, Availability]:
        bookings = self._live_bookings()
        slots_left = max(self.max_sessions - len(bookings), 0)
        note = "simulated GPUs" if self.inventory.simulated else ""
        out = {}
        for profile in profiles:
            busy = sum(1 for b in bookings if b.profile == profile.name)
            capacity = count_startable(profile, self.inventory, [], self.max_sessions)
            free = count_startable(profile, self.inventory, bookings, slots_left)
            out[profile.name] = Availability(
                profile.name, capacity, free, busy, 0, note if profile.kind != "cpu" else ""
            )
        return out


def _terminate_group(pid: int) -> None:
    """SIGTERM the job's process group, then SIGKILL what is left after a grace period."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
