"""The Slurm backend's requests and parsing, without a cluster: sbatch arguments, the
batch script, refusals, and real squeue/scontrol output read back."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from test_backend_slurm import CPU, GPU1, GPU2, MIG, MPS25, MPS50, SECRET, spec

from gpuaf.errors import BackendError
from gpuaf.spawners.backends.base import JobState
from gpuaf.spawners.backends.slurm import SlurmBackend
from gpuaf.spawners.backends.slurm_nodes import parse_nodes
from gpuaf.spawners.backends.slurm_parse import exit_code, gres_indexes, job_state, parse_jobs
from gpuaf.spawners.backends.slurm_request import SlurmOptions, gres, shards, walltime


# -- requests, without a cluster ----------------------------------------------
def test_describe_every_kind(tmp_path):
    backend = SlurmBackend(tmp_path / "spool", bin_dir=Path("/opt/slurm/bin"), partition="gpu")
    texts = {}
    for p in (CPU, GPU1, GPU2, MIG, MPS25):
        job = spec(p, tmp_path, secrets={"GPUAF_TOKEN": SECRET}, accounting_group="higgs")
        argv, script = backend.request(job, None)
        texts[p.name] = backend.describe(job)
        assert argv[0] == "/opt/slurm/bin/sbatch"
        assert "--export=ALL" in argv and "--parsable" in argv and "--partition=gpu" in argv
        assert f"--comment=gpuaf:profile={p.name},portal=gpuaf,session=x" in argv
        assert "--cpus-per-task=1" in argv and "--mem=100M" in argv
        assert "--time=0-00:10:00" in argv and f"--chdir={tmp_path}" in argv
        assert f"--output={tmp_path}/spool/logs/%j.out" in argv
        assert not any(a.startswith("--account") for a in argv)  # account_from_group off
        assert SECRET not in texts[p.name] and SECRET not in script
        assert "GPUAF_SECRETS_FILE=" in texts[p.name]
        assert script.startswith("#!/bin/sh\n")
        assert f"\nexec {sys.executable} -c " in script
    gres_of = {n: [a for a in t.split('"') if a.startswith("--gres")] for n, t in texts.items()}
    assert gres_of == {
        "cpu": [],
        "gpu-1": ["--gres=gpu:1"],
        "gpu-2": ["--gres=gpu:2"],
        "mig-1g": ["--gres=gpu:1g.18gb:1"],
        "mps-25": ["--gres=shard:1"],
    }
    assert "export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25" in texts["mps-25"]
    assert "export CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=20480M" in texts["mps-25"]
    assert "CUDA_MPS" not in texts["gpu-1"]


def test_mps_gres_modes_account_and_walltime(tmp_path):
    mps = SlurmBackend(tmp_path / "a", mps_gres="mps", account_from_group=True)
    argv, script = mps.request(spec(MPS25, tmp_path, accounting_group="higgs"), None)
    assert "--gres=mps:25" in argv and "--account=higgs" in argv
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in script  # Slurm sets it for gres mps
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=20480M" in script
    assert [shards(MPS25, 4), shards(MPS50, 4), shards(MPS25, 10), shards(MPS50, 1)] == [1, 2, 2, 1]
    assert gres(MPS50, SlurmOptions(shards_per_gpu=8)) == "shard:4"
    assert walltime(90) == "0-00:01:30" and walltime(2 * 86400 + 3661) == "2-01:01:01"
    with pytest.raises(BackendError, match="cannot be used as a Slurm account"):
        mps.request(spec(CPU, tmp_path, accounting_group="cms/higgs; x"), None)


def test_commands_get_a_minimal_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/site.conf")
    backend = SlurmBackend(tmp_path / "spool")
    assert backend.environment() == {
        "PATH": os.environ["PATH"],
        "SLURM_CONF": "/etc/slurm/site.conf",
    }
    # sbatch's environment becomes the job's (--export=ALL): nothing of the hub but the conf
    assert backend.environment("sbatch") == {"SLURM_CONF": "/etc/slurm/site.conf"}
    monkeypatch.delenv("SLURM_CONF")
    assert backend.environment("sbatch") == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env": {"X": "line\nbreak"}}, "line break"),
        ({"env": {"X": "nul\0"}}, "line break or NUL"),
        ({"env": {"BAD-KEY": "1"}}, "not a valid environment variable name"),
        ({"env": {"CUDA_VISIBLE_DEVICES": "3"}}, "set for the job by the batch system"),
        ({"env": {"SLURM_JOB_ID": "3"}}, "set for the job by the batch system"),
        ({"name": "x;reboot"}, "job name"),
        ({"name": "a\nb"}, "job name"),
        ({"tags": {"session": "a,profile=gpu-2"}}, "job tag"),
        ({"tags": {"Bad Key": "v"}}, "job tag"),
        ({"args": ("nul\0",)}, "NUL character"),
        ({"secrets": {"A=B": "x"}}, "not a valid environment variable name"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(tmp_path, change, message):
    backend = SlurmBackend(tmp_path / "spool")
    with pytest.raises(BackendError, match=message) as info:
        backend.describe(spec(CPU, tmp_path, **change))
    assert info.value.status == 400


@pytest.mark.parametrize("key", ["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "S3_SECRET"])
def test_tokens_in_the_visible_environment_are_refused(tmp_path, key):
    backend = SlurmBackend(tmp_path / "spool")
    with pytest.raises(BackendError, match="instead of its secrets file") as info:
        backend.describe(spec(CPU, tmp_path, env={key: SECRET}))
    assert info.value.status == 500 and SECRET not in str(info.value)
    backend.describe(spec(CPU, tmp_path, secrets={key: SECRET}))  # the right place


def test_parsing_of_real_scontrol_and_squeue_output():
    text = (
        "NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=3 CPUEfctv=8 CPUTot=8 "
        "Gres=gpu:h100:2,gpu:1g.18gb:2,shard:h100:8,shard:1g.18gb:0 GresDrain=N/A "
        "GresUsed=gpu:h100:1(IDX:1),gpu:1g.18gb:1(IDX:2),shard:h100:1(IDX:0),"
        "shard:1g.18gb:0(IDX:N/A) NodeAddr=127.0.0.1 OS=Linux 6.1 #1 SMP RealMemory=8000 "
        "AllocMem=300 State=MIXED Partitions=debug\n"
        "NodeName=b CPUAlloc=0 CPUTot=4 Gres=gpu:2,mps:200 GresUsed=gpu:0,mps:(null):1(IDX:0) "
        "RealMemory=100 AllocMem=0 State=IDLE+DRAIN Partitions=debug,gpu\n"
    )
    vm, b = parse_nodes(text)
    assert (vm.cpus, vm.cpus_used, vm.memory, vm.memory_used) == (8, 3, 8000, 300)
    assert vm.gpus == {"h100": 2, "1g.18gb": 2} and vm.shared == {"shard": 8}
    assert vm.gpus_used == {"h100": 1, "1g.18gb": 1} and vm.shared_gpus == {0}
    assert vm.gpu_indexes == {"h100": {1}, "1g.18gb": {2}} and b.gpu_indexes == {None: None}
    assert vm.usable and not b.usable and b.partitions == {"debug", "gpu"}
    assert b.gpus == {None: 2} and b.shared == {"mps": 200} and b.shared_gpus == {0}
    assert gres_indexes("gpu:h100:3(IDX:0-1,3)") == ("0", "1", "3")
    assert [exit_code(t) for t in ("0", "768", "9", "3:0", "0:15", "", "N/A")] == [
        0,
        3,
        -9,
        3,
        -15,
        None,
        None,
    ]
    rows = parse_jobs(
        "7|PENDING|Resources|n/a|0|4294901753|2026-11-21T17:15:23|gres:shard:4||gpuaf:profile=a\n"
        "8|FAILED|NonZeroExitCode|vm|768|1|2026-11-21T17:15:23|N/A|vm|(null)\n"
        "garbage line\n"
    )
    assert [r.job_id for r in rows] == ["7", "8"]
    assert rows[0].tags == {"profile": "a"} and rows[0].tres == "gres:shard:4"
    assert rows[1].tags is None and rows[1].exit_code == 3 and rows[1].batch_host == "vm"


@pytest.mark.parametrize(
    ("state", "reason", "tres", "expected"),
    [
        ("PENDING", "Resources", "gres:gpu:1", (JobState.PENDING, "waiting for a free GPU")),
        ("PENDING", "Resources", "", (JobState.PENDING, "waiting for free CPUs or memory")),
        ("PENDING", "Priority", "", (JobState.PENDING, "other jobs are ahead")),
        (
            "PENDING",
            "QOSMaxGRESPerUser",
            "",
            (JobState.PENDING, "a usage limit of your group is reached"),
        ),
        (
            "PENDING",
            "ReqNodeNotAvail, UnavailableNodes:vm",
            "",
            (JobState.PENDING, "the nodes it needs are not available (drained or down)"),
        ),
        ("PENDING", "JobHeldAdmin", "", (JobState.HELD, "The job is held by an administrator.")),
        ("RUNNING", "None", "", (JobState.RUNNING, "")),
        ("COMPLETING", "None", "", (JobState.RUNNING, "")),
        ("COMPLETED", "None", "", (JobState.DONE, "")),
        ("CANCELLED", "None", "", (JobState.CANCELLED, "The job was cancelled.")),
        ("TIMEOUT", "TimeLimit", "", (JobState.FAILED, "The job reached its time limit.")),
        ("OUT_OF_MEMORY", "OutOfMemory", "", (JobState.FAILED, "The job ran out of memory.")),
        ("NODE_FAIL", "NodeDown", "", (JobState.FAILED, "The node running the job failed.")),
    ],
)
def test_states_and_reasons_in_words(state, reason, tres, expected):
    line = f"5|{state}|{reason}|vm|0|1|2026-01-01T00:00:00|{tres}|vm|gpuaf:profile=p"
    (row,) = parse_jobs(line)
    assert job_state(row) == expected
