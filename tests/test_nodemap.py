"""The admins' node map from the local inventory and from Slurm's node and job rows."""

from __future__ import annotations

import pytest

from gpuaf.gpus import parse_simulation
from gpuaf.spawners.backends import slurm_nodes as nodes_parser
from gpuaf.spawners.backends.nodemap import local_nodes, slurm_nodes
from gpuaf.spawners.backends.slurm_parse import JobRow


def test_the_local_map_cuts_each_gpu_into_its_slices_and_names_whose():
    inv = parse_simulation("2xH100-80GB,H200-141GB[3g.71gb,2g.35gb,2x1g.18gb]")
    mig = next(d for d in inv.devices if d.mig_profile == "1g.18gb")
    h100, other = [d for d in inv.devices if not d.is_mig][:2]
    live = [
        {"user": "alice", "profile": "mig-1g.18gb", "kind": "mig", "devices": [mig.id]},
        {"user": "bob", "profile": "gpu-1", "kind": "gpu", "devices": [h100.id]},
        {"user": "carol", "profile": "mps-25", "kind": "mps", "devices": [other.id],
         "mps_percentage": 25},
    ]  # fmt: skip
    (node,) = local_nodes(inv, live, "wn01")
    assert node.name == "wn01" and node.usable and node.note == "simulated GPUs"
    by_index = {g.index: g for g in node.gpus}
    assert [(s.label, s.state, s.user) for s in by_index[str(h100.parent_index)].slices] == [
        ("whole GPU", "busy", "bob")
    ]
    shared = by_index[str(other.parent_index)].slices
    assert [(s.label, s.state, s.user, s.share) for s in shared] == [
        ("MPS 25 %", "busy", "carol", 0.25), ("MPS, free", "free", None, 0.75),
    ]  # fmt: skip
    h200 = by_index[str(mig.parent_index)]
    assert h200.model.startswith("H200")
    labels = sorted((s.label, s.state, s.user) for s in h200.slices)
    assert labels == [
        ("MIG 1g.18gb", "busy", "alice"), ("MIG 1g.18gb", "free", None),
        ("MIG 2g.35gb", "free", None), ("MIG 3g.71gb", "free", None),
    ]  # fmt: skip
    assert sum(s.share for s in h200.slices) == pytest.approx(1.0)  # 3 + 2 + 1 + 1 sevenths


SCONTROL = (
    "NodeName=wn01 Arch=x86_64 CPUTot=64 CPUAlloc=8 RealMemory=512000 AllocMem=16000 "
    "State=MIXED Partitions=gpu Gres=gpu:h100:4 GresUsed=gpu:h100:2(IDX:0,2)\\n"
    "NodeName=wn02 Arch=x86_64 CPUTot=64 CPUAlloc=0 RealMemory=512000 AllocMem=0 "
    "State=IDLE+DRAIN Partitions=gpu Gres=gpu:h100:2 GresUsed=gpu:h100:0(IDX:N/A)\\n"
)


def test_the_slurm_map_marks_used_indexes_whose_and_drained_nodes():
    nodes = nodes_parser.parse_nodes(SCONTROL.replace("\\\\n", "\\n").replace("\\n", "\n"))
    row = JobRow("812", "RUNNING", "None", "wn01", None, 0, "", "gres/gpu:1", "wn01",
                 {"portal": "gpuaf", "user": "dana", "profile": "gpu-1"})  # fmt: skip
    views = {n.name: n for n in slurm_nodes(nodes, [row], {"812": {"user": "dana", "gpus": ["2"]}})}
    wn01 = [(g.index, g.slices[0].state, g.slices[0].user) for g in views["wn01"].gpus]
    assert wn01 == [("0", "busy", None), ("1", "free", None), ("2", "busy", "dana"),
                    ("3", "free", None)]  # fmt: skip
    assert not views["wn02"].usable
    assert {g.slices[0].state for g in views["wn02"].gpus} == {"drained"}
