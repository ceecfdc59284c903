"""The ``local`` backend: each job is a process on this machine.

For a single-machine trial and the demo. Devices come from NVML, or from an explicit
simulated inventory (clearly labelled as such to the user). Every job leaves a small
record in the state directory, so a restarted hub still knows its jobs: the process
table and those records are the truth, nothing is kept only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
        """Atomically, mode 0600: a waiting job's record holds its environment (its token)."""
        tmp = self._record_path(job_id).with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        tmp.replace(self._record_path(job_id))

    def _records(self) -> dict[str, dict]:
        found = {path.stem: self._read(path.stem) for path in self.state_dir.glob("*.json")}
        return {job_id: record for job_id, record in found.items() if record}

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

    def _live_bookings(self, records: dict[str, dict] | None = None) -> list[Booking]:
        records = self._records() if records is None else records
        return [
            Booking(r["profile"], r["kind"], tuple(r["devices"]), r.get("mps_percentage", 0))
            for r in records.values()
            if r.get("state") == JobState.RUNNING and self._alive(r)
        ]

    @staticmethod
    def _waiting(records: dict[str, dict]) -> list[tuple[str, dict]]:
        """Waiting jobs, first come first served."""
        pending = [(j, r) for j, r in records.items() if r.get("state") == JobState.PENDING]
        return sorted(pending, key=lambda item: item[1]["submitted"])

    @contextlib.asynccontextmanager
    async def _locked(self):
        """One scheduler at a time, across the processes sharing the state directory."""
        async with self._lock:
            with (self.state_dir / ".lock").open("a") as fh:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise BackendError("The local job queue is busy; try again.") from None
                        await asyncio.sleep(0.05)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # -- the four calls --------------------------------------------------
    async def submit(self, spec: JobSpec) -> str:
        job_id = f"local-{uuid.uuid4().hex[:12]}"
        record = {
            "state": JobState.PENDING,
            "user": spec.user,
            "profile": spec.profile.name,
            "profile_spec": spec.profile.model_dump(mode="json"),
            "kind": spec.profile.kind,
            "devices": [],
            "mps_percentage": spec.profile.mps_thread_percentage or 0,
            "simulated": self.inventory.simulated,
            "tags": dict(spec.tags),
            "submitted": time.time(),
            # kept only while the job waits: a later scheduling pass starts it from these
            "command": list(spec.command),
            "env": dict(spec.env),
            "workdir": str(spec.workdir) if spec.workdir else None,
        }
        async with self._locked():
            self._write(job_id, record)
            await self._schedule()
        return job_id

    async def _schedule(self) -> None:
        """Start the waiting jobs that fit now, oldest first (call with the lock held)."""
        records = self._records()
        bookings = self._live_bookings(records)
        for job_id, record in self._waiting(records):
            if len(bookings) >= self.max_sessions:
                return
            profile = SliceProfile.model_validate(record["profile_spec"])
            devices = allocate(profile, self.inventory, bookings)
            if devices is None:
                continue  # a smaller job behind it may still fit
            await self._start(job_id, record, profile, devices)
            bookings.append(Booking(profile.name, profile.kind, devices, record["mps_percentage"]))

    async def _start(
        self, job_id: str, record: dict, profile: SliceProfile, devices: tuple[str, ...]
    ) -> None:
        env = {**record.pop("env"), **self._device_env(profile, devices), "GPUAF_JOB_ID": job_id}
        command = record.pop("command")
        with (self.state_dir / f"{job_id}.log").open("ab") as log:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *command, env=env, cwd=record.pop("workdir"), stdout=log,
                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                record.update(state=JobState.FAILED, exit_code=127)
                record["reason"] = "The session could not be started on this machine."
                self._write(job_id, record)
                log.write(f"exec {command[0]}: {exc}\n".encode())
                return
        self._procs[job_id] = proc
        record.update(
            state=JobState.RUNNING,
            pid=proc.pid,
            create_time=psutil.Process(proc.pid).create_time(),
            devices=list(devices),
            started=time.time(),
        )
        self._write(job_id, record)
        asyncio.get_running_loop().create_task(self._reap(job_id, proc))

    async def _reap(self, job_id: str, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        record = self._read(job_id)
        if record and record["state"] == JobState.RUNNING:
            record.update(state=JobState.DONE if code == 0 else JobState.FAILED, exit_code=code)
            self._write(job_id, record)
        self._procs.pop(job_id, None)
        async with self._locked():  # its slice is free: a waiting job may start
            await self._schedule()

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
        async with self._locked():
            await self._schedule()
            records = self._records()
        waiting = [(j, r["profile"]) for j, r in self._waiting(records)]
        out = {}
        for job_id in job_ids:
            record = records.get(job_id)
            if record is None:
                out[job_id] = JobStatus(
                    job_id, JobState.UNKNOWN, reason="This machine has no record of the session."
                )
                continue
            state = JobState(record["state"])
            position = None
            if state == JobState.RUNNING and not self._alive(record) and job_id not in self._procs:
                state = JobState.UNKNOWN
                reason = "The session's process is gone."
            elif state == JobState.PENDING:
                ahead = [j for j, p in waiting if p == record["profile"]]
                position = ahead.index(job_id) + 1
                reason = "waiting for a free slice on this machine"
            else:
                reason = self._reason(job_id, state, record)
            out[job_id] = JobStatus(
                job_id,
                state,
                "127.0.0.1" if state == JobState.RUNNING else None,
                reason,
                record.get("exit_code"),
                tuple(record["devices"]),
                queue_position=position,
            )
        return out

    def _reason(self, job_id: str, state: JobState, record: dict) -> str:
        if state != JobState.FAILED:
            return ""
        if record.get("reason"):
            return record["reason"]
        try:
            lines = (self.state_dir / f"{job_id}.log").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        last = lines[-1].strip() if lines else ""
        return f"The session's server exited with code {record.get('exit_code')}" + (
            f": {last[:300]}" if last else "."
        )

    async def cancel(self, job_id: str) -> None:
        async with self._locked():
            record = self._read(job_id)
            if record is None or JobState(record["state"]).final:
                return
            if record["state"] == JobState.PENDING:  # never started: forget its environment
                for key in ("env", "command", "workdir"):
                    record.pop(key, None)
                record["state"] = JobState.CANCELLED
                self._write(job_id, record)
                return
        if self._alive(record):
            await asyncio.to_thread(_terminate_group, record["pid"])
        proc = self._procs.get(job_id)
        if proc is not None:
            await proc.wait()
        # the reaper may have written FAILED for our own SIGTERM
        record = self._read(job_id) or record
        record["state"] = JobState.CANCELLED
        self._write(job_id, record)
        async with self._locked():
            await self._schedule()

    async def availability(self, profiles: Sequence[SliceProfile]) -> dict[str, Availability]:
        records = self._records()
        bookings = self._live_bookings(records)
        waiting = [r["profile"] for _j, r in self._waiting(records)]
        slots_left = max(self.max_sessions - len(bookings), 0)
        note = "simulated GPUs" if self.inventory.simulated else ""
        out = {}
        for profile in profiles:
            busy = sum(1 for b in bookings if b.profile == profile.name)
            capacity = count_startable(profile, self.inventory, [], self.max_sessions)
            free = count_startable(profile, self.inventory, bookings, slots_left)
            out[profile.name] = Availability(
                profile.name,
                capacity,
                free,
                busy,
                waiting.count(profile.name),
                note if profile.kind != "cpu" else "",
            )
        return out

    async def nodes(self):
        import socket

        from gpuaf.spawners.backends.nodemap import local_nodes

        records = self._records()
        live = [
            r for r in records.values() if r.get("state") == JobState.RUNNING and self._alive(r)
        ]
        return local_nodes(self.inventory, live, socket.gethostname())


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
