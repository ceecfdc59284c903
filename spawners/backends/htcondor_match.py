"""What the pool could run: job ads as condor_submit writes them, matched with classad2.

``htcondor2.Submit`` cannot produce job ads without a schedd (``Submit.jobs()`` is not
implemented), so :func:`job_ad` builds the attributes condor_submit derives from our
submit keys (``RequestGPUs``, ``RequireGPUs`` with its generated ``gpus_minimum_*``
clauses, the default ``Requirements``) and :func:`fits` counts, with real ClassAd
matching both ways, how many such jobs a slot ad takes: a partitionable slot is carved
one job at a time, each job taking the devices its ``RequireGPUs`` accepts, as the
startd does when it creates a dynamic slot.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import htcondor2  # noqa: F401 - first: it registers countMatches/evalInEachContext

# isort: split
import classad2

# attributes a slot ad must carry for matching; nested per-device ads (GPUs_<id>) have
# names only known from AvailableGPUs, so the collector query asks for whole ads
SLOT_CONSTRAINT = "DynamicSlot =!= true"
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESOURCES = (("Cpus", "RequestCpus"), ("Memory", "RequestMemory"), ("Disk", "RequestDisk"))
_GENERATED = (  # submit key, job attribute, device property, comparison
    ("gpus_minimum_capability", "GPUsMinCapability", "Capability", ">="),
    ("gpus_minimum_memory", "GPUsMinMemory", "GlobalMemoryMb", ">="),
    ("gpus_minimum_runtime", "GPUsMinRuntime", "MaxSupportedVersion", ">="),
)


def submit_arch() -> str:
    """The Arch condor_submit would require: the submit machine's own."""
    machine = platform.machine()
    return {"x86_64": "X86_64", "AMD64": "X86_64", "arm64": "aarch64"}.get(machine, machine)


def _number(key: str, text: str) -> int | float:
    if key == "gpus_minimum_runtime" and "." in text:  # 12.4 -> 12040, as condor_submit
        major, minor = text.split(".", 1)
        return int(major) * 1000 + int(minor) * 10
    return float(text) if "." in text else int(text)


def job_ad(desc: Mapping[str, str], arch: str = "X86_64", opsys: str = "LINUX") -> classad2.ClassAd:
    """The job ad condor_submit would send for this submit description (matching part)."""
    ad = classad2.ClassAd()
    ad["RequestCpus"] = int(desc.get("request_cpus", "1"))
    ad["RequestMemory"] = int(desc["request_memory"])
    ad["RequestDisk"] = int(desc["request_disk"])
    clauses = []
    if desc.get("requirements"):
        clauses.append(f"({desc['requirements']})")
    clauses += [
        f'(TARGET.Arch == "{arch}")',
        f'(TARGET.OpSys == "{opsys}")',
        "(TARGET.Disk >= RequestDisk)",
        "(TARGET.Memory >= RequestMemory)",
    ]
    if desc.get("request_gpus"):
        ad["RequestGPUs"] = int(desc["request_gpus"])
        require = [f"({desc['require_gpus']})"] if desc.get("require_gpus") else []
        for key, attr, prop, op in _GENERATED:
            if desc.get(key):
                ad[attr] = _number(key, desc[key])
                if not re.search(rf"\b{prop}\b", desc.get("require_gpus", "")):
                    require.append(f"{prop} {op} {attr}")
        if require:
            ad["RequireGPUs"] = classad2.ExprTree(" && ".join(require))
            clauses.append("(countMatches(MY.RequireGPUs,TARGET.AvailableGPUs) >= RequestGPUs)")
        else:
            clauses.append("(TARGET.GPUs >= RequestGPUs)")
    if desc.get("universe") == "container":
        image = desc["container_image"]
        ad["WantContainer"] = True
        ad["ContainerImage"] = image
        clauses.append("(TARGET.HasContainer)")
        if image.startswith("docker://"):
            clauses.append("(TARGET.HasDockerURL)")
        elif image.endswith(".sif"):
            clauses.append("(TARGET.HasSIF)")
        else:
            clauses.append("(TARGET.HasSandboxImage)")
    clauses.append("(TARGET.HasFileTransfer)")
    ad["Requirements"] = classad2.ExprTree(" && ".join(clauses))
    for key, value in desc.items():
        if key.startswith("MY."):
            ad[key[3:]] = classad2.ExprTree(value)
    return ad


def copy_ad(ad: classad2.ClassAd) -> classad2.ClassAd:
    return classad2.parseOne(ad.printOld())


def _int(ad: classad2.ClassAd, attr: str) -> int:
    """An attribute's value as a whole number; 0 if it is missing or not a number."""
    value = ad.eval(attr) if attr in ad else 0
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return int(value) if ok else 0


def _refs(ad: classad2.ClassAd) -> list[str]:
    value = ad.eval("AvailableGPUs") if "AvailableGPUs" in ad else []
    return [str(r) for r in value] if isinstance(value, list) else []


def _set_refs(ad: classad2.ClassAd, refs: list[str]) -> None:
    ad["AvailableGPUs"] = classad2.ExprTree("{ " + ", ".join(refs) + " }")


def emptied(slot: classad2.ClassAd) -> classad2.ClassAd:
    """A partitionable slot as it would be with no dynamic slot carved out of it."""
    ad = copy_ad(slot)
    if slot.get("PartitionableSlot") is not True:
        return ad
    for now, total in (
        ("Cpus", "TotalSlotCpus"),
        ("Memory", "TotalSlotMemory"),
        ("Disk", "TotalSlotDisk"),
        ("GPUs", "TotalSlotGPUs"),
    ):
        if total in ad:
            ad[now] = _int(ad, total)
    assigned = slot.get("AssignedGPUs")
    if isinstance(assigned, str) and assigned.strip():
        names = ("GPUs_" + re.sub(r"[-/]", "_", i.strip()) for i in assigned.split(","))
        _set_refs(ad, [n for n in names if _REF.match(n) and n in ad])
    return ad


def _take(ad: classad2.ClassAd, job: classad2.ClassAd) -> None:
    """Carve one dynamic slot for ``job`` out of ``ad``, as the startd would."""
    for have, want in _RESOURCES:
        ad[have] = _int(ad, have) - _int(job, want)
    wanted = job.get("RequestGPUs")
    if not wanted:
        return
    refs = _refs(ad)
    if "RequireGPUs" in job:
        ok = classad2.ExprTree("evalInEachContext(MY.RequireGPUs, TARGET.AvailableGPUs)")
        accepted = ok.eval(job, ad)
        accepted = accepted if isinstance(accepted, list) else []
    else:
        accepted = [True] * len(refs)
    chosen = [i for i, yes in enumerate(accepted) if yes is True][:wanted]
    _set_refs(ad, [r for i, r in enumerate(refs) if i not in chosen])
    ad["GPUs"] = _int(ad, "GPUs") - len(chosen)


def fits(job: classad2.ClassAd, slot: classad2.ClassAd, limit: int = 10_000) -> int:
    """How many jobs like ``job`` the slot takes now (1 at most for a static slot)."""
    if not job.symmetricMatch(slot):
        return 0
    if slot.get("PartitionableSlot") is not True:
        return 1
    by_resources = min(_int(slot, have) // max(_int(job, want), 1) for have, want in _RESOURCES)
    limit = min(limit, max(by_resources, 1))
    if not job.get("RequestGPUs"):
        return limit
    ad, n = copy_ad(slot), 0
    while n < limit and job.symmetricMatch(ad):
        n += 1
        _take(ad, job)
    return n


@dataclass(frozen=True)
class PoolCount:
    capacity: int  # jobs the pool could run if it were empty
    free: int  # jobs that could start now
    nodes: int  # machines where at least one fits


def count_pool(job: classad2.ClassAd, slots: Iterable[classad2.ClassAd]) -> PoolCount:
    capacity = free = 0
    nodes: set[str] = set()
    for slot in slots:
        try:
            here = fits(job, emptied(slot))
            now = fits(job, slot) if slot.get("State") == "Unclaimed" else 0
        except (classad2.ClassAdException, TypeError, ValueError):
            continue  # an ad this code cannot read: it offers nothing we can count
        if here:
            capacity += here
            nodes.add(str(slot.get("Machine", slot.get("Name", ""))))
        free += now
    return PoolCount(capacity, free, len(nodes))
