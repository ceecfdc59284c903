"""`gpuaf node inspect`: the devices NVML shows and the HTCondor config that publishes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest
from support.fake_nvml import FakeGpu, FakeNVML, real_nvml_available

from gpuaf.node import NodeReport, htcondor_config, inspect, main

H100 = FakeGpu("NVIDIA H100 80GB HBM3", 81559, uuid="GPU-aaaa")
A100 = FakeGpu("NVIDIA A100-SXM4-80GB", 81920, uuid="GPU-cccc")
H200_MIG = FakeGpu(
    "NVIDIA H200",
    143771,
    [("3g.71gb", 71151), ("2g.35gb", 33011), ("1g.18gb", 16375), ("1g.18gb", 16375)],
    "GPU-bbbb",
)


class BrokenNVML(FakeNVML):
    """A driver that answers nvmlInit, then fails (e.g. a GPU fell off the bus)."""

    def nvmlDeviceGetCount(self):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)


def test_whole_gpus():
    report = inspect(FakeNVML([H100, H100]))
    assert [d.name for d in report.whole] == ["NVIDIA H100 80GB HBM3"] * 2 and not report.mig
    config = htcondor_config(report)
    assert "use feature : GPUs" in config.splitlines()
    assert "GPU_DISCOVERY_EXTRA = $(GPU_DISCOVERY_EXTRA) -extra" in config
    assert "2x NVIDIA H100 80GB HBM3" in config
    assert "-divide" not in config and "MIG" not in config


def test_mixed_mig_layout():
    report = inspect(FakeNVML([H100, H200_MIG]))
    assert [d.mig_profile for d in report.mig] == ["3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"]
    config = htcondor_config(report)
    assert "4 MIG instance(s) on 1 GPU(s)" in config
    assert "2x NVIDIA H200 MIG 1g.18gb" in config
    assert "every MIG instance as a device of its own" in config


def test_mps_shares_publish_divided_gpus_and_the_daemon():
    config = htcondor_config(inspect(FakeNVML([A100, A100])), 4, "/run/nvidia-mps")
    assert "GPU_DISCOVERY_EXTRA = $(GPU_DISCOVERY_EXTRA) -divide 4" in config
    assert 'GPUSharingMode = "mps"' in config
    assert "STARTD_ATTRS = $(STARTD_ATTRS) GPUSharingMode" in config
    assert "#   Environment=CUDA_MPS_PIPE_DIRECTORY=/run/nvidia-mps" in config
    assert "#   ExecStart=/usr/bin/nvidia-cuda-mps-control -d" in config
    assert "MPS on MIG" not in config
    mixed = htcondor_config(inspect(FakeNVML([A100, H200_MIG])), 4)
    assert "MPS on MIG needs one control" in mixed


@pytest.mark.parametrize("shares", [0, 1, 49])
def test_bad_share_counts_are_refused(shares):
    with pytest.raises(ValueError, match="--mps-shares"):
        htcondor_config(inspect(FakeNVML([A100])), shares)


def test_no_driver_is_a_plain_sentence():
    report = inspect(FakeNVML(driver_loaded=False))
    assert report.devices == ()
    text = htcondor_config(report, 4)
    assert "No NVIDIA GPU found on this node (NVML: " in text
    assert text.rstrip().endswith("nothing to publish.")
    assert "use feature" not in text


def test_a_driver_that_fails_after_init_is_reported():
    report = inspect(BrokenNVML([H100]))
    assert report.devices == ()
    assert "No NVIDIA GPU found on this node (NVML: " in htcondor_config(report)


def test_config_is_read_by_htcondor_itself(tmp_path: Path):
    """The real HTCondor config parser (in the bindings) reads what we write."""
    (tmp_path / "gpus.conf").write_text(htcondor_config(inspect(FakeNVML([A100, A100])), 4))
    (tmp_path / "condor_config").write_text(
        f"LOCAL_DIR = {tmp_path}\nRELEASE_DIR = /usr\nLOCAL_CONFIG_FILE = {tmp_path}/gpus.conf\n"
    )
    probe = (
        "import htcondor2, json; p = htcondor2.param; print(json.dumps({k: p.get(k) for k in "
        "['MACHINE_RESOURCE_INVENTORY_GPUs', 'GPUSharingMode', 'STARTD_ATTRS']}))"
    )
    env = {**os.environ, "CONDOR_CONFIG": str(tmp_path / "condor_config")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    values = json.loads(out.stdout)
    assert values["MACHINE_RESOURCE_INVENTORY_GPUs"].split() == [
        "/usr/libexec/condor_gpu_discovery", "-properties", "-extra", "-divide", "4",
    ]  # fmt: skip
    assert values["GPUSharingMode"] == '"mps"'
    assert "GPUSharingMode" in values["STARTD_ATTRS"]


def test_main_prints_a_table_then_the_config(capsys):
    assert main(["--mps-shares", "2"], nvml=FakeNVML([A100, H200_MIG])) == 0
    out = capsys.readouterr().out
    table, config = out.split("\n\n", 1)
    assert "MIG PROFILE" in table and "MIG-bbbb-0" in table and "69.5 GiB" in table
    assert config.startswith("# HTCondor startd configuration")
    assert "-divide 2" in config


def test_main_json(capsys):
    assert main(["--json"], nvml=FakeNVML([H100])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == "nvml"
    assert data["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert "use feature : GPUs" in data["htcondor_config"]


def test_main_without_a_driver_and_with_a_bad_option(capsys):
    assert main([], nvml=FakeNVML(driver_loaded=False)) == 0
    assert "nothing to publish" in capsys.readouterr().out
    assert main(["--mps-shares", "100"], nvml=FakeNVML([H100])) == 2
    assert "--mps-shares must be" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not real_nvml_available(), reason="no NVIDIA driver (NVML) on this machine")
def test_a_real_gpu(capsys):
    report = inspect()
    assert isinstance(report, NodeReport) and report.inventory.source == "nvml"
    assert report.devices and all(d.memory_mib > 1024 for d in report.devices)
    config = htcondor_config(report, 4 if report.whole else None)
    assert "use feature : GPUs" in config
    assert main([]) == 0
    print(capsys.readouterr().out)
