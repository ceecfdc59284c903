"""Reading nodes: GRES and what is used of them, and what a profile could get now.

Pure functions over ``scontrol --oneliner --details show node`` (Slurm 22.05 and
later) and squeue rows, so they are tested without a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import Availability
from gpuaf.spawners.backends.slurm_parse import JobRow, gres_indexes
from gpuaf.spawners.backends.slurm_request import SlurmOptions, shards

MIG_TYPE = re.compile(r"(^|_)\d+g\.\d+gb$")  # GRES types of MIG instances (1g.18gb)


@dataclass
class Node:
    name: str
    state: str
    partitions: set[str]
    cpus: int
    cpus_used: int
    memory: int
    memory_used: int
    gpus: dict[str | None, int] = field(default_factory=dict)  # type -> count
    gpus_used: dict[str | None, int] = field(default_factory=dict)  # type -> count
    gpu_indexes: dict[str | None, set[int] | None] = field(default_factory=dict)  # None: unknown
    shared: dict[str, int] = field(default_factory=dict)  # shard|mps -> count on the node
    shared_gpus: set[int] = field(default_factory=set)  # GPUs with shard/mps in use
    shared_used: dict[str, int] = field(default_factory=dict)  # from running jobs

    @property
    def usable(self) -> bool:
        flags = set(re.split(r"[+*~#!%$@^-]", self.state.upper()))
        bad = {"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "NOT_RESPONDING"}
        bad |= {"FUTURE", "MAINT", "POWERED_DOWN", "POWERING_DOWN", "INVAL", "UNKNOWN"}
        return not (flags & bad) and not self.state.endswith("*")


def split_gres(text: str) -> list[str]:
    """Comma-separated GRES items, keeping commas inside parentheses (IDX:0,2)."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [i for i in [*items, current] if i and i not in ("(null)", "N/A")]


def _gres_item(item: str) -> tuple[str, str | None, int, str]:
    """``gpu:h100:2(S:0-1)`` → ("gpu", "h100", 2, "S:0-1"); type "(null)" → None."""
    head, _, rest = item.partition("(")
    parts = head.split(":")
    name, count = parts[0], parts[-1]
    kind = parts[1] if len(parts) > 2 and parts[1] != "(null)" else None
    return name, kind, int(count) if count.isdigit() else 0, rest.rstrip(")")


def parse_nodes(text: str) -> list[Node]:
    nodes = []
    for line in text.splitlines():
        fields = dict(
            kv.split("=", 1) for kv in re.findall(r"(?:^|\s)([A-Za-z]+=\S*)", line) if "=" in kv
        )
        if "NodeName" not in fields:
            continue
        node = Node(
            fields["NodeName"],
            fields.get("State", ""),
            set(filter(None, fields.get("Partitions", "").split(","))),
            _int(fields.get("CPUTot")),
            _int(fields.get("CPUAlloc")),
            _int(fields.get("RealMemory")),
            _int(fields.get("AllocMem")),
        )
        for item in split_gres(fields.get("Gres", "")):
            name, kind, count, _ = _gres_item(item)
            if name == "gpu":
                node.gpus[kind] = node.gpus.get(kind, 0) + count
            elif name in ("shard", "mps"):
                node.shared[name] = node.shared.get(name, 0) + count
        for item in split_gres(fields.get("GresUsed", "")):
            name, kind, count, extra = _gres_item(item)
            known = "IDX:" in extra  # 22.05 omits the indexes of untyped gpus
            used = {int(i) for i in gres_indexes(f"({extra})")}
            if name == "gpu":
                node.gpus_used[kind] = node.gpus_used.get(kind, 0) + count
                node.gpu_indexes[kind] = used if known else None
            elif name in ("shard", "mps"):
                node.shared_gpus |= used
        nodes.append(node)
    return nodes


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def add_shared_use(nodes: list[Node], rows: list[JobRow]) -> None:
    """Shard/MPS units held by running jobs, per node (GresUsed counts GPUs, not units)."""
    by_name = {n.name: n for n in nodes}
    for row in rows:
        node = by_name.get(row.nodes)  # single-node jobs; a hostlist matches no name
        if node is None or row.state not in ("RUNNING", "COMPLETING", "SUSPENDED"):
            continue
        for item in row.tres.split(","):
            parts = re.sub(r"^gres[:/]", "", item.strip()).split(":")
            if parts[0] in ("shard", "mps") and parts[-1].isdigit():
                node.shared_used[parts[0]] = node.shared_used.get(parts[0], 0) + int(parts[-1])


def fits(node: Node, profile: SliceProfile, options: SlurmOptions) -> tuple[int, int]:
    """(on the empty node, now) how many jobs of the profile the node can take.

    As Slurm 22.05 books them: a whole-GPU job may land on a GPU that shard/MPS jobs
    use, but shard/MPS jobs avoid GPUs booked whole, and one job's shards come from one
    GPU. Where Slurm does not publish which GPU holds what, the count errs low.
    """
    whole = [t for t in node.gpus if t is None or not MIG_TYPE.search(t)]
    whole_used = sum(node.gpus_used.get(t, 0) for t in whole)
    if profile.kind == "gpu":
        total = sum(node.gpus[t] for t in whole)
        gres_fit = (total // profile.gpus, max(total - whole_used, 0) // profile.gpus)
    elif profile.kind == "mig":
        total = node.gpus.get(profile.mig_profile, 0)
        gres_fit = (total, total - node.gpus_used.get(profile.mig_profile, 0))
    elif profile.kind == "mps":
        gres_fit = _shared_fit(node, profile, options, whole, whole_used)
    else:
        gres_fit = (1 << 30, 1 << 30)
    mem = max(profile.memory, 1)
    cpu_total = min(node.cpus // profile.cpus, node.memory // mem)
    cpu_free = min(
        (node.cpus - node.cpus_used) // profile.cpus, (node.memory - node.memory_used) // mem
    )
    return min(gres_fit[0], cpu_total), max(min(gres_fit[1], cpu_free), 0)


def _shared_fit(
    node: Node, profile: SliceProfile, options: SlurmOptions, whole: list, whole_used: int
) -> tuple[int, int]:
    name = options.mps_gres
    per_gpu = options.shards_per_gpu if name == "shard" else 100
    want = shards(profile, per_gpu) if name == "shard" else profile.mps_thread_percentage or 1
    carriers = node.shared.get(name, 0) // per_gpu
    partial = len(node.shared_gpus)
    indexes = [node.gpu_indexes.get(t) for t in whole]
    if whole_used and all(i is not None for i in indexes):
        overlap = len(set().union(*indexes) & node.shared_gpus)
    else:  # unknown: assume booked whole GPUs took the shared ones last
        overlap = max(whole_used - (carriers - partial), 0)
    untouched = max(carriers - partial - (whole_used - overlap), 0)
    # a partly used GPU keeps at most per_gpu - 1 units; where they lie is not published
    left = max(partial * per_gpu - node.shared_used.get(name, 0) - overlap * (per_gpu - 1), 0)
    on_partial = min(left // want, (partial - overlap) * ((per_gpu - 1) // want))
    return carriers * (per_gpu // want), untouched * (per_gpu // want) + max(on_partial, 0)


def availability(
    profile: SliceProfile, nodes: list[Node], rows: list[JobRow], options: SlurmOptions
) -> Availability:
    """Capacity and free slices over the usable nodes; busy and waiting portal jobs."""
    capacity = free = unusable = 0
    for node in nodes:
        if options.partition and options.partition not in node.partitions:
            continue
        total, now = fits(node, profile, options)
        if not node.usable:
            unusable += total > 0
            continue
        capacity, free = capacity + total, free + now
    mine = [r for r in rows if r.profile == profile.name]
    busy = sum(r.state in ("RUNNING", "COMPLETING", "CONFIGURING") for r in mine)
    waiting = sum(r.state == "PENDING" for r in mine)
    note = f"{unusable} node(s) offering it are drained or down" if unusable else ""
    if not capacity and not unusable:
        note = "no node of the cluster offers this slice"
    return Availability(profile.name, capacity, free, busy, waiting, note)
