"""The ``slurm`` backend: sessions and notebook jobs are Slurm batch jobs.

Every command runs as an argument list (``sbatch``, ``squeue``, ``scancel``,
``scontrol`` from ``backend.slurm.bin_dir`` or PATH), never through a shell, with an
environment of PATH and SLURM_CONF only (sbatch: SLURM_CONF only); see
:mod:`.slurm_commands`. sbatch reads the batch script on its standard input; the job's
environment is exactly Slurm's own variables plus ``spec.env`` and what the script
sets (see :mod:`.slurm_request`).

Secrets (``spec.secrets``) are written as JSON to a file of mode 0600 in the spool
directory and named in the job's ``GPUAF_SECRETS_FILE``: **the spool directory must be
on a file system the worker nodes share with the portal**, and the jobs run as the
same Unix user as the portal (sbatch books them as that user). The file is removed
when the job is cancelled or the batch system no longer runs it.

Containers: ``spec.image`` is ignored; on Slurm the command runs on the node as is
(running it through Apptainer needs a setting that does not exist yet).

Every job leaves a small record in the spool directory (:mod:`.slurm_records`), so a
restarted hub still knows which jobs are the portal's, which one it cancelled itself,
and how a job ended that squeue no longer lists (Slurm keeps finished jobs only for
MinJobAge, and without accounting storage there is no sacct to ask).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends import slurm_nodes, slurm_parse
from gpuaf.spawners.backends.base import Availability, Backend, JobSpec, JobState, JobStatus
from gpuaf.spawners.backends.slurm_commands import (
    CommandResult,
    SlurmCommands,
    refusal,
    unreachable,
)
from gpuaf.spawners.backends.slurm_records import JobRecords
from gpuaf.spawners.backends.slurm_request import (
    SlurmOptions,
    batch_script,
    sbatch_args,
    secrets_json,
)

JOB_ID = re.compile(r"^\d{1,12}$")
GONE = "The batch system no longer lists the job."
CANCELLED = "The job was cancelled."


class SlurmBackend(Backend):
    name = "slurm"
    reports_port = True

    def __init__(
        self,
        spool_dir: Path,
        *,
        partition: str | None = None,
        bin_dir: Path | None = None,
        mps_gres: str = "shard",
        shards_per_gpu: int = 4,
        account_from_group: bool = False,
        slurm_conf: Path | None = None,
        availability_ttl: float = 5.0,
        timeout: float = 30.0,
    ):
        self.records = JobRecords(spool_dir)
        self.spool = self.records.spool
        self.options = SlurmOptions(partition, mps_gres, shards_per_gpu, account_from_group)
        self.commands = SlurmCommands(bin_dir, slurm_conf, timeout)
        self.runner = self.commands.run  # (argv, stdin) -> CommandResult; tests wrap it
        self.availability_ttl = availability_ttl
        self._snapshot: tuple[float, list[slurm_nodes.Node], list] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings) -> SlurmBackend:
        s = settings.backend.slurm
        return cls(
            settings.data_dir / "slurm-spool",
            partition=s.partition,
            bin_dir=s.bin_dir,
            mps_gres=s.mps_gres,
            shards_per_gpu=s.shards_per_gpu,
            account_from_group=s.account_from_group,
            slurm_conf=s.conf,  # else the hub's $SLURM_CONF
            availability_ttl=s.availability_ttl,
        )

    def environment(self, program: str = "squeue") -> dict[str, str]:
        return self.commands.environment(program)

    def program(self, name: str) -> str:
        return self.commands.program(name)

    async def _run(self, name: str, *args: str) -> CommandResult:
        return await self.runner([self.program(name), *args], None)

    # -- requests --------------------------------------------------------
    def request(self, spec: JobSpec, secrets_file: Path | None) -> tuple[list[str], str]:
        """The sbatch argv and the batch script (its standard input) for ``spec``."""
        args = sbatch_args(spec, self.options, self.records.logs)
        secrets_json(spec.secrets)  # refuse bad names before anything is written
        return [self.program("sbatch"), *args], batch_script(spec, self.options, secrets_file)

    def describe(self, spec: JobSpec) -> str:
        """sbatch's argv (JSON) and the script; the secrets file is named, never shown."""
        placeholder = self.spool / "secrets" / "<one file per job>.json" if spec.secrets else None
        argv, script = self.request(spec, placeholder)
        return f"sbatch argv: {json.dumps(argv)}\nbatch script (sbatch's standard input):\n{script}"

    # -- the four calls --------------------------------------------------
    async def submit(self, spec: JobSpec) -> str:
        secrets_file = self.records.new_secrets_path() if spec.secrets else None
        argv, script = self.request(spec, secrets_file)  # refuses bad input before any file
        if secrets_file is not None:
            self.records.write_secrets(secrets_file, secrets_json(spec.secrets))
        try:
            result = await self.runner(argv, script.encode())
            job_id = result.stdout.strip().split(";")[0]
            if result.returncode != 0 or not JOB_ID.match(job_id):
                raise refusal(spec.profile, result)
        except BaseException:
            if secrets_file is not None:
                secrets_file.unlink(missing_ok=True)
            raise
        record = {"job_id": job_id, "name": spec.name, "user": spec.user, "submitted": time.time()}
        record.update(profile=spec.profile.name, secrets_file=str(secrets_file or ""))
        self.records.write(record)
        self._snapshot = None  # what is free has changed
        return job_id

    async def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        records = {j: self.records.read(j) for j in job_ids if JOB_ID.match(j)}
        for job_id in job_ids:
            record = records.get(job_id)
            if job_id not in records:  # not an id of ours: never reaches a command
                out[job_id] = JobStatus(job_id, JobState.UNKNOWN, reason=GONE)
            elif record and record.get("final"):
                state, code = JobState(record["final"]), record.get("exit_code")
                out[job_id] = JobStatus(job_id, state, None, record["reason"], code)
        wanted = [j for j in job_ids if j not in out]
        if not wanted:
            return out
        # the live portal jobs ride along: queue positions, and records of ended jobs
        query = sorted(set(wanted) | self.records.live(), key=int)
        rows = {
            r.job_id: r for r in await self._squeue("--states=all", f"--jobs={','.join(query)}")
        }
        places = slurm_parse.queue_positions(list(rows.values()))
        fetched = False  # GPUs of at most one newly running job per round (scontrol)
        for job_id in query:
            record = records.get(job_id) or self.records.read(job_id) or {}
            row = rows.get(job_id)
            if row is None:
                cancelled = record.get("cancelled")
                state = JobState.CANCELLED if cancelled else JobState.UNKNOWN
                status = JobStatus(job_id, state, reason=CANCELLED if cancelled else GONE)
            else:
                state, reason = slurm_parse.job_state(row)
                if state == JobState.CANCELLED and not record.get("cancelled"):
                    reason = "The job was cancelled by an administrator or the batch system."
                elif state == JobState.CANCELLED:
                    reason = CANCELLED
                gpus = tuple(record.get("gpus", ()))
                new = state == JobState.RUNNING and record and "gpus" not in record
                if new and job_id in wanted and not fetched:
                    fetched = True
                    gpus = await self._allocated_gpus(row)
                code = row.exit_code if state.final else None
                host = row.batch_host or row.nodes or None
                status = JobStatus(job_id, state, host, reason, code, gpus, places.get(job_id))
            if status.state.final and record:
                outcome = {"reason": status.reason, "exit_code": status.exit_code}
                self.records.finish(job_id, final=status.state.value, **outcome)
            if job_id in wanted:
                out[job_id] = status
        return out

    async def _squeue(self, *filters: str) -> list[slurm_parse.JobRow]:
        fmt = f"--Format={slurm_parse.JOB_FORMAT}"
        result = await self._run("squeue", "--noheader", *filters, fmt)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:  # squeue says so when one id is asked
                return []
            raise unreachable("squeue", result)
        return slurm_parse.parse_jobs(result.stdout)

    async def _allocated_gpus(self, row: slurm_parse.JobRow) -> tuple[str, ...]:
        """GPU indexes of a running job (``GRES=gpu:2(IDX:0-1)``), kept in its record."""
        result = await self._run("scontrol", "--oneliner", "--details", "show", "job", row.job_id)
        found = re.search(r"\sGRES=(\S+)", result.stdout) if result.returncode == 0 else None
        gpus = slurm_parse.gres_indexes(found[1]) if found else ()
        if result.returncode == 0:
            self.records.update(row.job_id, gpus=list(gpus))
        return gpus

    async def cancel(self, job_id: str) -> None:
        if not JOB_ID.match(job_id):
            return
        record = self.records.read(job_id)
        self.records.update(job_id, cancelled=True)
        result = await self._run("scancel", job_id)
        gone = re.search(r"Invalid job id|already completing or completed", result.stderr)
        if result.returncode != 0 and not gone:
            raise unreachable("scancel", result)
        if record is not None:
            self.records.forget_secrets(record)
        self._snapshot = None

    async def nodes(self):
        from gpuaf.spawners.backends.nodemap import slurm_nodes as node_views

        await self.availability([])  # the node and job snapshot, shared with the forms
        _, nodes, rows = self._snapshot
        records = {r.job_id: self.records.read(r.job_id) or {} for r in rows if r.tags}
        return node_views(nodes, rows, records)

    async def availability(self, profiles: Sequence[SliceProfile]) -> dict[str, Availability]:
        async with self._lock:  # open forms share one pair of queries per availability_ttl
            if self._snapshot is None or time.monotonic() > self._snapshot[0]:
                shown = await self._run("scontrol", "--oneliner", "--details", "show", "node")
                if shown.returncode != 0:
                    raise unreachable("scontrol", shown)
                rows = await self._squeue(f"--states={slurm_parse.ACTIVE_STATES}")
                nodes = slurm_nodes.parse_nodes(shown.stdout)
                slurm_nodes.add_shared_use(nodes, rows)
                self._snapshot = (time.monotonic() + self.availability_ttl, nodes, rows)
            _, nodes, rows = self._snapshot
        return {p.name: slurm_nodes.availability(p, nodes, rows, self.options) for p in profiles}
