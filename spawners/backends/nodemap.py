"""The admins' node map: every node's GPUs and their slices, free, busy (whose) or drained.

Pure functions over what the backends already read: the local inventory and its live
job records; Slurm's ``scontrol show node`` and ``squeue`` rows with the portal's job
records (which hold the GPU indexes of running jobs).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

from gpuaf.gpus import Inventory
from gpuaf.spawners.backends.base import GpuView, NodeView, SliceUse


def _model(name: str) -> str:
    return re.sub(r"\s+MIG\s+\S+$", "", name).replace("NVIDIA ", "")


def local_nodes(inventory: Inventory, live: Iterable[Mapping], host: str) -> list[NodeView]:
    """One node (this machine) from the inventory and the live local jobs."""
    records = list(live)
    by_parent = defaultdict(list)
    for device in inventory.devices:
        by_parent[device.parent_index].append(device)
    gpus = []
    for parent, devices in sorted(by_parent.items()):
        mig = [d for d in devices if d.is_mig]
        slices: list[SliceUse] = []
        for d in mig:
            owner = next((r for r in records if d.id in r.get("devices", ())), None)
            share = int(d.mig_profile.split("g", 1)[0]) / 7
            slices.append(_use(f"MIG {d.mig_profile}", owner, share))
        whole = next((d for d in devices if not d.is_mig), None)
        if whole is not None:
            users = [r for r in records if whole.id in r.get("devices", ())]
            mps = [r for r in users if r.get("kind") == "mps"]
            if mps:
                for r in mps:
                    pct = int(r.get("mps_percentage") or 100)
                    slices.append(_use(f"MPS {pct} %", r, pct / 100))
                left = 1 - sum(int(r.get("mps_percentage") or 100) for r in mps) / 100
                if left > 0:
                    slices.append(SliceUse("MPS, free", "free", left))
            else:
                slices.append(_use("whole GPU", users[0] if users else None, 1.0))
        memory = whole.memory_mib if whole is not None else None
        gpus.append(GpuView(str(parent), _model(devices[0].name), memory, tuple(slices)))
    note = "simulated GPUs" if inventory.simulated else inventory.note
    return [NodeView(host, "up", True, tuple(gpus), note)]


def _use(label: str, record: Mapping | None, share: float) -> SliceUse:
    if record is None:
        return SliceUse(label, "free", share)
    return SliceUse(label, "busy", share, record.get("user"), record.get("profile"))


def slurm_nodes(nodes: Iterable, rows: Iterable, records: Mapping[str, Mapping]) -> list[NodeView]:
    """Slurm's nodes: each GPU index busy or free; whose, for the portal's running jobs."""
    owners: dict[tuple[str, int], Mapping] = {}
    for row in rows:
        record = records.get(row.job_id)
        host = row.batch_host or row.nodes
        if record and host and row.state in ("RUNNING", "COMPLETING"):
            for index in record.get("gpus", ()):
                owners[(host, int(index))] = {**record, "user": record.get("user")}
    out = []
    for node in nodes:
        count = sum(node.gpus.values())
        used: set[int] = set()
        known = True
        for indexes in node.gpu_indexes.values():
            if indexes is None:
                known = False
            else:
                used |= set(indexes)
        gpus = []
        for index in range(count):
            owner = owners.get((node.name, index))
            if not node.usable:
                use = SliceUse("whole GPU", "drained", 1.0)
            elif index in node.shared_gpus:
                use = SliceUse("shared (shard/MPS)", "busy", 1.0, owner and owner.get("user"))
            elif index in used or owner:
                use = (
                    _use("whole GPU", owner or {}, 1.0) if owner else SliceUse("whole GPU", "busy")
                )
            else:
                use = SliceUse("whole GPU", "free" if known else "busy", 1.0)
            types = [t for t in node.gpus if t]
            gpus.append(GpuView(str(index), ", ".join(types) or "GPU", None, (use,)))
        note = "" if known else "Slurm does not say which GPU indexes are in use"
        out.append(NodeView(node.name, node.state.lower(), node.usable, tuple(gpus), note))
    return out


def _ref(device_id: str) -> str:
    return "GPUs_" + re.sub(r"[-/.]", "_", device_id)


def _mig_share(name: str) -> tuple[str, float] | None:
    found = re.search(r"MIG\s+(\d)g\.(\S+)$", name)
    return (f"MIG {found[1]}g.{found[2]}", int(found[1]) / 7) if found else None


def htcondor_nodes(slots: Iterable, jobs: Iterable[Mapping]) -> list[NodeView]:
    """HTCondor's startd ads (partitionable or static slots, not dynamic ones) and the
    portal's running jobs (``RemoteHost``, ``AssignedGPUs``, ``GpuafUser``)."""
    owners: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for job in jobs:
        machine = str(job.get("RemoteHost") or "").rpartition("@")[2]
        for device in str(job.get("AssignedGPUs") or "").split(","):
            if machine and device.strip():
                owners[(machine, device.strip())].append(job)
    by_machine: dict[str, list] = defaultdict(list)
    for slot in slots:
        by_machine[str(slot.get("Machine") or slot.get("Name"))].append(slot)
    out = []
    for machine, ads in sorted(by_machine.items()):
        gpus: dict[str, list[SliceUse]] = {}
        names: dict[str, str] = {}
        drained = any(ad.get("Draining") is True or ad.get("State") == "Drained" for ad in ads)
        for ad in ads:
            assigned = [
                i.strip() for i in str(ad.get("AssignedGPUs") or "").split(",") if i.strip()
            ]
            if "AvailableGPUs" in ad:
                value = ad.eval("AvailableGPUs")
                free = [str(r) for r in value] if isinstance(value, list) else []
            else:  # a static slot: all of its GPUs are free while it is unclaimed
                free = [_ref(i) for i in assigned] if ad.get("State") == "Unclaimed" else []
            parts = {i: assigned.count(i) for i in assigned}
            for device, count in parts.items():
                nested = ad.get(_ref(device))
                nested = nested if hasattr(nested, "get") else {}
                name = str(nested.get("DeviceName") or ad.get("GPUs_DeviceName") or "GPU")
                gpu = str(nested.get("DevicePciBusId") or device)
                names.setdefault(gpu, _model(name))
                mig = _mig_share(name)
                for _ in range(count):
                    label, share = mig or ("whole GPU" if count == 1 else f"1/{count} share",
                                           1 / count)  # fmt: skip
                    if drained:
                        use = SliceUse(label, "drained", share)
                    elif _ref(device) in free:
                        free.remove(_ref(device))
                        use = SliceUse(label, "free", share)
                    else:
                        taken = owners.get((machine, device)) or [{}]
                        job = taken.pop(0) if len(taken) > 1 else taken[0]
                        use = SliceUse(label, "busy", share, job.get("GpuafUser"),
                                       job.get("GpuafProfile"))  # fmt: skip
                    gpus.setdefault(gpu, []).append(use)
        views = tuple(
            GpuView(str(i), names[g], None, tuple(uses))
            for i, (g, uses) in enumerate(sorted(gpus.items()))
        )
        out.append(NodeView(machine, "drained" if drained else "up", not drained, views))
    return out
