"""The admins' node map from the local inventory and from Slurm's node and job rows."""

from __future__ import annotations

import pytest

from gpuaf.gpus import parse_simulation
from gpuaf.spawners.backends import slurm_nodes as nodes_parser
from gpuaf.spawners.backends.nodemap import htcondor_nodes, local_nodes, slurm_nodes
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


def test_the_htcondor_map_from_real_slot_ads_and_the_portals_running_jobs():
    from support.fake_htcondor import load_slot_ads

    ads = load_slot_ads()
    drained = ads["a"]  # four whole H100s, drained for maintenance
    drained["Draining"] = True
    slots = [ads["b2"], ads["c"], ads["d"], drained, ads["e"]]  # b2: two MIG slices claimed
    job = {
        "RemoteHost": "slot1_1@gpu-a100mig-01.example.org",
        "GpuafUser": "alice",
        "GpuafProfile": "a100-mig-1g5",
        "AssignedGPUs": "MIG-7f8c89ab-fef6-23b0-73b5-85e40b7c7e32",
    }
    views = {n.name.split(".")[0]: n for n in htcondor_nodes(slots, [job])}
    # the CPU-only machine has no GPU to draw; the query asks for TotalGPUs > 0 anyway
    mig = views["gpu-a100mig-01"]
    (gpu,) = mig.gpus
    states = [(s.label, s.state, s.user) for s in gpu.slices]
    assert states.count(("MIG 1g.5gb", "free", None)) == 5  # AvailableGPUs lists five
    assert ("MIG 1g.5gb", "busy", "alice") in states  # the portal's job on one of them
    assert ("MIG 1g.5gb", "busy", None) in states  # the other claimed one: not the portal's
    h200 = views["gpu-h200mig-01"].gpus[0]
    assert sorted(s.label for s in h200.slices) == [
        "MIG 1g.18gb", "MIG 1g.18gb", "MIG 2g.35gb", "MIG 3g.71gb",
    ]  # fmt: skip
    shared = views["gpu-a100share-01"]
    assert len(shared.gpus) == 2 and all(len(g.slices) == 4 for g in shared.gpus)
    assert {s.label for g in shared.gpus for s in g.slices} == {"1/4 share"}
    h100 = views["gpu-h100-01"]
    assert not h100.usable and h100.state == "drained" and len(h100.gpus) == 4
    assert {s.state for g in h100.gpus for s in g.slices} == {"drained"}


async def test_the_htcondor_backend_asks_the_collector_and_the_schedd(tmp_path):
    from support.fake_htcondor import FakeCollector, FakeSchedd, fake_factories, load_slot_ads

    from gpuaf.spawners.backends.htcondor import HTCondorBackend

    ads = load_slot_ads()
    slots = [ads[k] for k in ("a", "c", "d", "e")]
    backend = HTCondorBackend(
        **fake_factories(FakeSchedd(), FakeCollector(slots)), spool_dir=tmp_path / "spool"
    )
    names = {n.name for n in await backend.nodes()}
    assert names == {"gpu-h100-01.example.org", "gpu-h200mig-01.example.org",
                     "gpu-a100share-01.example.org"}  # the CPU-only node is not drawn  # fmt: skip
