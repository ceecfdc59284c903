"""The ``htcondor`` backend: sessions and batch jobs as HTCondor jobs, through htcondor2.

Submit descriptions come from :mod:`.htcondor_submit` (validated values in a dict, never
a template, never a shell), availability from real ClassAd matching of each profile's
job ad against the collector's slot ads (:mod:`.htcondor_match`), hold reasons in plain
words from :mod:`.htcondor_holds`. The bindings block, so every call runs in a thread.

Secrets (``JobSpec.secrets``) never enter the description: they are written as JSON to
a file of mode 0600 in a per-job folder of the spool directory, transferred with the
job, named in its environment as ``GPUAF_SECRETS_FILE``, and the folder is deleted once
the job is gone or cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import htcondor2

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends import htcondor_jobs as jobs
from gpuaf.spawners.backends.base import Availability, Backend, JobSpec, JobStatus
from gpuaf.spawners.backends.checks import ENV_KEY
from gpuaf.spawners.backends.htcondor_match import SLOT_CONSTRAINT
from gpuaf.spawners.backends.htcondor_submit import SECRETS_FILE, SubmitConfig, build

if TYPE_CHECKING:
    from gpuaf.settings import Settings

# HTCondor's C++ library keeps process-wide state (configuration, security sessions):
# one binding call at a time, from whichever worker thread
_BINDINGS = threading.Lock()
_ERRORS = (htcondor2.HTCondorException, RuntimeError, OSError, ValueError)
_TOKEN = re.compile(r"^[0-9a-f]{16}$")
log = logging.getLogger(__name__)
UNREACHABLE = "The batch system (HTCondor) does not answer right now; try again in a minute."


class HTCondorBackend(Backend):
    name = "htcondor"
    reports_port = True

    def __init__(
        self,
        *,
        schedd_factory: Callable[[], Any],
        collector_factory: Callable[[], Any],
        spool_dir: str | os.PathLike[str] | None = None,
        config: SubmitConfig | None = None,
        availability_ttl: float = 10.0,
        image: str | None = None,
        spool_input: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._schedd_factory, self._collector_factory = schedd_factory, collector_factory
        self._schedd: Any = None
        self._collector: Any = None
        self.spool_dir = Path(spool_dir or Path("gpuaf-data") / "htcondor-spool").resolve()
        self.config = config or SubmitConfig()
        self.availability_ttl = availability_ttl
        self.image = image
        self.spool_input = spool_input  # a remote schedd: input files go with the submit
        self._clock = clock
        self._lock = asyncio.Lock()
        self._snapshot: jobs.Snapshot | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HTCondorBackend:
        cfg = settings.backend.htcondor

        def collector() -> Any:
            return htcondor2.Collector(cfg.collector)

        def schedd() -> Any:
            if not cfg.schedd_name:
                return htcondor2.Schedd()
            return htcondor2.Schedd(
                collector().locate(htcondor2.DaemonType.Schedd, cfg.schedd_name)
            )

        return cls(
            schedd_factory=schedd,
            collector_factory=collector,
            spool_dir=settings.data_dir / "htcondor-spool",
            config=SubmitConfig("gpuaf", cfg.accounting_group_prefix, cfg.mps_pipe_directory),
            availability_ttl=cfg.availability_ttl,
            image=settings.sessions.image,
            spool_input=bool(cfg.schedd_name),
        )

    # -- the bindings, in threads ---------------------------------------------
    async def _call(self, which: str, method: str, *args: Any, **kw: Any) -> Any:
        def run() -> Any:
            with _BINDINGS:
                handle = getattr(self, f"_{which}")
                if handle is None:
                    handle = getattr(self, f"_{which}_factory")()
                    setattr(self, f"_{which}", handle)
                return getattr(handle, method)(*args, **kw)

        try:
            return await asyncio.to_thread(run)
        except _ERRORS:
            setattr(self, f"_{which}", None)  # locate the daemon again next time
            raise

    # -- submit ------------------------------------------------------------------
    def _description(self, spec: JobSpec, job_dir: Path) -> htcondor2.Submit:
        desc = build(spec, self.config, job_dir, with_secrets=bool(spec.secrets))
        return jobs.checked_submit(desc, spec.secrets.values())

    def describe(self, spec: JobSpec) -> str:
        return str(self._description(spec, self.spool_dir / "job-folder"))

    async def submit(self, spec: JobSpec) -> str:
        for key, value in spec.secrets.items():
            if not ENV_KEY.match(key) or not isinstance(value, str):
                raise BackendError("A secret of the job has an invalid name.", status=400)
        token = secrets.token_hex(8)
        job_dir = self.spool_dir / token
        sub = self._description(spec, job_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.spool_dir / "jobs").mkdir(exist_ok=True, mode=0o700)
        job_dir.mkdir(mode=0o700)
        try:
            if spec.secrets:
                jobs.write_private(job_dir / SECRETS_FILE, json.dumps(dict(spec.secrets)))
            result = await self._call("schedd", "submit", sub, count=1, spool=self.spool_input)
            if self.spool_input:
                await self._call("schedd", "spool", result)
                (job_dir / SECRETS_FILE).unlink(missing_ok=True)
        except _ERRORS as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise BackendError(
                "The batch system (HTCondor) did not accept the job; try again in a minute.",
                log_message=f"htcondor submit: {exc}",
            ) from exc
        job_id = f"{result.cluster()}.{result.first_proc()}"
        (self.spool_dir / "jobs" / job_id).write_text(token)
        self._snapshot = None
        return job_id

    def _job_dir(self, job_id: str) -> Path | None:
        try:
            token = (self.spool_dir / "jobs" / job_id).read_text().strip()
        except OSError:
            return None
        return self.spool_dir / token if _TOKEN.match(token) else None

    def _clean(self, job_id: str) -> None:
        """Delete the job's folder (its secrets) once HTCondor will not run it again."""
        job_dir = self._job_dir(job_id)
        if job_dir is not None:
            shutil.rmtree(job_dir, ignore_errors=True)
        (self.spool_dir / "jobs" / job_id).unlink(missing_ok=True)

    # -- status --------------------------------------------------------------
    async def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = {j: jobs.parse_id(j) for j in job_ids}
        try:
            queue = await self._call(
                "schedd", "query", constraint=jobs.portal_constraint(self.config.portal),
                projection=jobs.PROJECTION,
            )  # fmt: skip
            known = {jobs.ad_id(ad): ad for ad in queue}
        except _ERRORS as exc:
            raise BackendError(UNREACHABLE, log_message=f"htcondor status: {exc}") from exc
        missing = [ids[j] for j in job_ids if ids[j] and jobs.ad_key(ids[j]) not in known]
        if missing:  # left the queue: ended one way or another; the history says how
            try:
                history = await self._call(
                    "schedd", "history", constraint=jobs.ids_constraint(missing),
                    projection=jobs.PROJECTION, match=len(missing),
                )  # fmt: skip
                known |= {jobs.ad_id(ad): ad for ad in history}
            except _ERRORS as exc:
                log.warning("htcondor history: %s", exc)
        positions = jobs.queue_positions(queue)
        out = {}
        for job_id in job_ids:
            key = jobs.ad_key(ids[job_id]) if ids[job_id] else None
            job_dir = self._job_dir(key) if key else None
            out[job_id] = jobs.to_status(job_id, known.get(key), positions.get(key), job_dir)
            if key and out[job_id].state.final:
                self._clean(key)
        return out

    # -- cancel --------------------------------------------------------------
    async def cancel(self, job_id: str) -> None:
        parsed = jobs.parse_id(job_id)
        if parsed is None:
            return
        try:
            await self._call(
                "schedd", "act", htcondor2.JobAction.Remove, [jobs.ad_key(parsed)],
                "Stopped from the gpuaf portal",
            )  # fmt: skip
        except _ERRORS as exc:
            state = await self._queue_state(parsed)
            if state not in (None, 3, 4):
                raise BackendError(UNREACHABLE, log_message=f"htcondor remove: {exc}") from exc
        self._clean(jobs.ad_key(parsed))
        self._snapshot = None

    async def _queue_state(self, parsed: tuple[int, int]) -> int | None:
        try:
            ads = await self._call(
                "schedd", "query", constraint=jobs.ids_constraint([parsed]),
                projection=["JobStatus"],
            )  # fmt: skip
        except _ERRORS:
            return -1  # unknown: the removal cannot be confirmed
        return ads[0].get("JobStatus") if ads else None

    # -- nodes ---------------------------------------------------------------
    async def nodes(self):
        from gpuaf.spawners.backends.nodemap import htcondor_nodes

        try:
            slots = await self._call(
                "collector", "query", htcondor2.AdType.Startd,
                constraint=f"({SLOT_CONSTRAINT}) && TotalGPUs > 0",
            )  # fmt: skip
            running = await self._call(
                "schedd", "query",
                constraint=f"{jobs.portal_constraint(self.config.portal)} && JobStatus == 2",
                projection=["RemoteHost", "AssignedGPUs", "GpuafUser", "GpuafProfile"],
            )  # fmt: skip
        except _ERRORS as exc:
            raise BackendError(UNREACHABLE, log_message=f"htcondor nodes: {exc}") from exc
        return htcondor_nodes(slots, [dict(ad) for ad in running])

    # -- availability --------------------------------------------------------
    async def availability(self, profiles: Sequence[SliceProfile]) -> dict[str, Availability]:
        async with self._lock:  # concurrent forms wait for the one query in flight
            snap = self._snapshot
            if snap is None or self._clock() - snap.taken > self.availability_ttl:
                snap = self._snapshot = await self._take_snapshot(snap)
            todo = [p for p in profiles if jobs.profile_key(p) not in snap.computed]
            if todo:
                probe = self.spool_dir / "probe"
                await asyncio.to_thread(jobs.compute, snap, todo, self.config, self.image, probe)
        return {p.name: snap.computed[jobs.profile_key(p)] for p in profiles}

    async def _take_snapshot(self, previous: jobs.Snapshot | None) -> jobs.Snapshot:
        now = self._clock()
        try:
            slots = await self._call(
                "collector", "query", htcondor2.AdType.Startd, constraint=SLOT_CONSTRAINT
            )
            active = jobs.portal_constraint(self.config.portal, active=True)
            queue = await self._call(
                "schedd", "query", constraint=active, projection=["GpuafProfile", "JobStatus"]
            )
        except _ERRORS as exc:
            log.warning("htcondor availability: %s", exc)
            note = "The batch system does not answer right now"
            if previous is None:
                return jobs.Snapshot(now, now, [], {}, note + "; availability unknown.")
            note += f" (figures from {int(now - previous.data_at)} s ago)."
            return jobs.Snapshot(now, previous.data_at, previous.slots, previous.counts, note)
        return jobs.Snapshot(now, now, list(slots), jobs.count_by_profile(queue))


__all__ = ["HTCondorBackend"]
