"""Job ids, queue constraints, and job ads turned into :class:`JobStatus`.

Job ids are ``<ClusterId>.<ProcId>``. Constraints are built from integers and from the
portal name that passed the tag pattern, never from free text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import htcondor2

from gpuaf.errors import BackendError
from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import Availability, JobSpec, JobState, JobStatus
from gpuaf.spawners.backends.htcondor_holds import clean, explain_hold
from gpuaf.spawners.backends.htcondor_match import PoolCount, count_pool, job_ad, submit_arch
from gpuaf.spawners.backends.htcondor_quote import tag_value
from gpuaf.spawners.backends.htcondor_submit import SubmitConfig, build

PROJECTION = [
    "ClusterId", "ProcId", "JobStatus", "HoldReason", "HoldReasonCode", "HoldReasonSubCode",
    "RemoteHost", "AssignedGPUs", "GPUsUsage", "GPUsMemoryUsage", "GpuafProfile", "QDate",
    "ExitCode", "ExitBySignal", "ExitSignal", "RemoveReason", "EnteredCurrentStatus",
]  # fmt: skip
_ID = re.compile(r"^([0-9]{1,12})\.([0-9]{1,9})$")
MIN_SECRET = 6  # shorter secret values are not searched for in descriptions


def parse_id(job_id: object) -> tuple[int, int] | None:
    m = _ID.match(job_id) if isinstance(job_id, str) else None
    return (int(m[1]), int(m[2])) if m else None


def ad_key(parsed: tuple[int, int]) -> str:
    return f"{parsed[0]}.{parsed[1]}"


def ad_id(ad: Mapping[str, Any]) -> str:
    return f"{ad.get('ClusterId')}.{ad.get('ProcId')}"


def portal_constraint(portal: str, active: bool = False) -> str:
    text = f'GpuafPortal == "{tag_value(portal, "The portal name")}"'
    return text + " && (JobStatus == 1 || JobStatus == 2)" if active else text


def ids_constraint(ids: Iterable[tuple[int, int]]) -> str:
    parts = [f"(ClusterId == {int(c)} && ProcId == {int(p)})" for c, p in ids]
    return " || ".join(parts) or "False"


def queue_positions(queue: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """1-based place of each idle job among the idle portal jobs of its profile."""
    idle: dict[str, list[Mapping[str, Any]]] = {}
    for ad in queue:
        if ad.get("JobStatus") == 1:
            idle.setdefault(str(ad.get("GpuafProfile")), []).append(ad)
    out = {}
    for ads in idle.values():
        ads.sort(key=lambda a: (a.get("QDate", 0), a.get("ClusterId", 0), a.get("ProcId", 0)))
        out |= {ad_id(a): i for i, a in enumerate(ads, 1)}
    return out


def _number(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _last_line(job_dir: Path | None) -> str:
    if job_dir is None:
        return ""
    try:
        lines = (job_dir / "job.err").read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line for line in lines if line.strip()]
    return clean(lines[-1], 300) if lines else ""


def to_status(
    job_id: str, ad: Mapping[str, Any] | None, position: int | None, job_dir: Path | None
) -> JobStatus:
    if ad is None:
        reason = "The batch system no longer knows this job: it left the queue and its history."
        return JobStatus(job_id, JobState.UNKNOWN, reason=reason)
    code = ad.get("JobStatus")
    if code in (2, 6):  # running, transferring output
        remote = ad.get("RemoteHost")
        host = remote.rsplit("@", 1)[-1] if isinstance(remote, str) and remote else None
        assigned = ad.get("AssignedGPUs")
        gpus = tuple(g.strip() for g in assigned.split(",") if g.strip()) if assigned else ()
        return JobStatus(
            job_id, JobState.RUNNING, host, gpus=gpus,
            gpu_utilisation=_number(ad.get("GPUsUsage")),
            gpu_memory_mib=_number(ad.get("GPUsMemoryUsage")),
        )  # fmt: skip
    if code == 1:
        return JobStatus(job_id, JobState.PENDING, queue_position=position)
    if code == 7:
        reason = "Suspended by the node's policy; it resumes when the node allows."
        return JobStatus(job_id, JobState.PENDING, reason=reason)
    if code == 5:
        reason = explain_hold(
            ad.get("HoldReasonCode"), ad.get("HoldReasonSubCode"), ad.get("HoldReason")
        )
        return JobStatus(job_id, JobState.HELD, reason=reason)
    if code == 3:
        why = clean(ad.get("RemoveReason"))
        reason = "Removed from the batch system" + (f" ({why})." if why else ".")
        return JobStatus(job_id, JobState.CANCELLED, reason=reason)
    if code == 4:
        if ad.get("ExitBySignal") is True:
            reason = f"The job was killed by signal {ad.get('ExitSignal')}."
            return JobStatus(job_id, JobState.FAILED, reason=reason)
        exit_code = ad.get("ExitCode")
        exit_code = exit_code if isinstance(exit_code, int) else None
        if exit_code == 0:
            return JobStatus(job_id, JobState.DONE, exit_code=0)
        last = _last_line(job_dir)
        reason = f"The job exited with code {exit_code}" + (f": {last}" if last else ".")
        return JobStatus(job_id, JobState.FAILED, reason=reason, exit_code=exit_code)
    return JobStatus(job_id, JobState.UNKNOWN, reason=f"HTCondor reports job status {code!r}.")


def checked_submit(desc: Mapping[str, str], secret_values: Iterable[str]) -> htcondor2.Submit:
    """The Submit object for ``desc``, after proving it holds exactly ``desc`` and no secret."""
    sub = htcondor2.Submit(dict(desc))
    text = str(sub)
    again = htcondor2.Submit(text)
    if dict(sub) != dict(desc) or dict(again) != dict(desc) or sub.getQArgs() or again.getQArgs():
        raise BackendError(
            "The job could not be described safely to HTCondor.",
            status=400,
            log_message=f"submit description does not round-trip: {text!r}",
        )
    if any(len(v) >= MIN_SECRET and v in text for v in secret_values):
        raise BackendError("A secret value would appear in the job's description.", status=400)
    return sub


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never an existing file) and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


@dataclass
class Snapshot:
    """One collector query and one schedd query, answering for a while."""

    taken: float  # when this snapshot was made
    data_at: float  # when the pool last answered (earlier if it did not answer now)
    slots: list[Any]
    counts: dict[str, tuple[int, int]]  # profile → (running, idle) portal jobs
    note: str = ""
    computed: dict[str, Availability] = field(default_factory=dict)


def count_by_profile(queue: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for ad in queue:
        busy, waiting = out.get(str(ad.get("GpuafProfile")), (0, 0))
        status = ad.get("JobStatus")
        out[str(ad.get("GpuafProfile"))] = (busy + (status == 2), waiting + (status == 1))
    return out


def profile_key(profile: SliceProfile) -> str:
    return profile.model_dump_json()


def availability_note(pool: PoolCount) -> str:
    if pool.capacity == 0:
        return "No node of the pool offers this slice."
    if pool.nodes == 1:
        return "1 node of the pool offers this slice."
    return f"{pool.nodes} nodes of the pool offer this slice."


def compute(
    snap: Snapshot,
    profiles: Iterable[SliceProfile],
    config: SubmitConfig,
    image: str | None,
    probe_dir: Path,
) -> None:
    """Fill ``snap.computed``: each profile's job ad matched against the snapshot's slots."""
    arch = submit_arch()
    for profile in profiles:
        spec = JobSpec(
            name="availability", user="gpuaf", profile=profile, command=("/bin/true",),
            image=image,
        )  # fmt: skip
        busy, waiting = snap.counts.get(profile.name, (0, 0))
        try:
            desc = build(spec, config, probe_dir, with_secrets=False)
        except BackendError as exc:  # a profile HTCondor cannot be asked for
            snap.computed[profile_key(profile)] = Availability(
                profile.name, 0, 0, busy, waiting, exc.message
            )
            continue
        pool = count_pool(job_ad(desc, arch=arch), snap.slots)
        note = snap.note or availability_note(pool)
        snap.computed[profile_key(profile)] = Availability(
            profile.name, pool.capacity, pool.free, busy, waiting, note, None
        )
