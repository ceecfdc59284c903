"""Reading squeue: job rows, states, reasons a user may read, queue positions.

Pure functions over the text of ``squeue --Format`` (Slurm 22.05 and later), so they
are tested without a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpuaf.spawners.backends.base import JobState
from gpuaf.spawners.backends.slurm_request import parse_comment

# squeue --Format fields; "|" ends each, Comment comes last (it may hold anything)
JOB_FIELDS = ("JobID", "State", "Reason", "BatchHost", "exit_code", "PriorityLong")
JOB_FIELDS += ("SubmitTime", "tres-per-node", "NodeList")
JOB_FORMAT = ",".join(f"{f}:|" for f in JOB_FIELDS) + ",Comment:"
ACTIVE_STATES = "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED"

PENDING_REASONS = {
    "Resources": "waiting for a free GPU",
    "Priority": "other jobs are ahead",
    "None": "waiting to be scheduled",
    "WaitingForScheduling": "waiting to be scheduled",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "scheduled to start later",
    "ReqNodeNotAvail": "the nodes it needs are not available (drained or down)",
    "NodeDown": "a node it needs is down",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition does not start jobs now",
    "PartitionTimeLimit": "its time limit is longer than the partition allows",
    "Reservation": "waiting for a reservation",
    "Licenses": "waiting for a licence",
    "Prolog": "the node is being prepared",
}
FAILED = {
    "FAILED": "The job's command failed",
    "TIMEOUT": "The job reached its time limit.",
    "NODE_FAIL": "The node running the job failed.",
    "OUT_OF_MEMORY": "The job ran out of memory.",
    "BOOT_FAIL": "The node for the job could not be started.",
    "DEADLINE": "The job missed its deadline.",
    "PREEMPTED": "A job of higher priority took the job's place.",
}


@dataclass(frozen=True)
class JobRow:
    job_id: str
    state: str
    reason: str
    batch_host: str
    exit_code: int | None
    priority: int
    submitted: str
    tres: str
    nodes: str
    tags: dict[str, str] | None  # None: not a portal job

    @property
    def profile(self) -> str | None:
        return (self.tags or {}).get("profile")


def parse_jobs(text: str) -> list[JobRow]:
    rows = []
    for line in text.splitlines():
        parts = line.split("|", len(JOB_FIELDS))
        if len(parts) != len(JOB_FIELDS) + 1:
            continue
        job_id, state, reason, host, code, prio, submitted, tres, nodes, note = (
            p.strip() for p in parts
        )
        rows.append(
            JobRow(
                job_id,
                state.split()[0] if state else "",
                reason,
                "" if host in ("", "n/a", "(null)") else host,
                exit_code(code),
                int(prio) if prio.isdigit() else 0,
                submitted,
                "" if tres in ("N/A", "(null)") else tres,
                "" if nodes in ("", "(null)") else nodes,
                parse_comment(note),
            )
        )
    return rows


def exit_code(text: str) -> int | None:
    """squeue's exit_code is a wait status (768: exit 3; 9: killed by signal 9, as -9);
    scontrol writes ``3:0`` (code:signal)."""
    code, colon, signal = text.partition(":")
    if not code.isdigit():
        return None
    if colon:
        return -int(signal) if signal.isdigit() and int(signal) else int(code)
    status = int(code)
    return -(status & 0x7F) if status & 0x7F else status >> 8


def queue_positions(rows: list[JobRow]) -> dict[str, int]:
    """1-based place of each pending portal job among those of its profile."""
    waiting: dict[str, list[JobRow]] = {}
    for row in rows:
        if row.state == "PENDING" and row.profile and not row.reason.startswith("JobHeld"):
            waiting.setdefault(row.profile, []).append(row)
    out = {}
    for jobs in waiting.values():
        jobs.sort(key=lambda r: (-r.priority, r.submitted, int(r.job_id.split("_")[0])))
        out.update({r.job_id: i for i, r in enumerate(jobs, 1)})
    return out


def pending_reason(row: JobRow) -> str:
    base = row.reason.split(",")[0].strip()
    if base == "Resources" and "gres" not in row.tres:
        return "waiting for free CPUs or memory"
    if base in PENDING_REASONS:
        return PENDING_REASONS[base]
    if "Limit" in base or base.startswith(("QOS", "Assoc")):
        return "a usage limit of your group is reached"
    return f"waiting ({base})"


def job_state(row: JobRow) -> tuple[JobState, str]:
    """Our state and a reason a user may read, from squeue's state and reason."""
    state = row.state
    if state == "PENDING":
        if row.reason.startswith("JobHeld"):
            who = "an administrator" if row.reason == "JobHeldAdmin" else "its owner"
            return JobState.HELD, f"The job is held by {who}."
        return JobState.PENDING, pending_reason(row)
    if state in ("CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"):
        return JobState.PENDING, "the node is being prepared"
    if state in ("RUNNING", "COMPLETING"):
        return JobState.RUNNING, ""
    if state in ("SUSPENDED", "STOPPED"):
        return JobState.HELD, "The batch system suspended the job."
    if state == "COMPLETED":
        return JobState.DONE, ""
    if state == "CANCELLED":
        return JobState.CANCELLED, "The job was cancelled."
    if state == "FAILED":
        code = f" with exit code {row.exit_code}" if row.exit_code is not None else ""
        return JobState.FAILED, f"The job's command failed{code}."
    return JobState.FAILED, FAILED.get(state, f"The batch system ended the job ({state}).")


def gres_indexes(text: str) -> tuple[str, ...]:
    """GPU indexes in ``GRES=gpu:h100:1(IDX:1)`` / ``shard:2(IDX:0)`` (scontrol -d)."""
    found: list[str] = []
    for spec in re.findall(r"\(IDX:([0-9,\-]+)\)", text):
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            found += [str(i) for i in range(int(lo), int(hi or lo) + 1)]
    return tuple(dict.fromkeys(found))
