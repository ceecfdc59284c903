"""GPU facts, simulated inventories, and discovery through pynvml's surface."""

from __future__ import annotations

import inspect

import pynvml
import pytest
from support.fake_nvml import FakeGpu, FakeNVML, real_nvml_available

from gpuaf.gpus import MODELS, discover, known_mig_profiles, parse_simulation


def test_fake_nvml_has_the_real_pynvml_surface():
    for name, member in inspect.getmembers(FakeNVML, inspect.isfunction):
        if not name.startswith("nvml"):
            continue
        real = getattr(pynvml, name)
        fake_params = list(inspect.signature(member).parameters)[1:]  # without self
        assert fake_params == list(inspect.signature(real).parameters), name


def test_h200_mig_memory_is_not_the_profile_name():
    assert MODELS["H200-141GB"].mig["1g.18gb"].memory_mib == 16384
    assert "A100-40GB" in known_mig_profiles()["1g.5gb"]


def test_simulation_spec():
    inv = parse_simulation("2xH100-80GB,H200-141GB[3g.71gb,2x1g.18gb]")
    assert inv.simulated
    assert [d.id for d in inv.devices] == ["0", "1", "MIG-sim02-00", "MIG-sim02-01", "MIG-sim02-02"]
    assert [d.mig_profile for d in inv.devices] == [None, None, "3g.71gb", "1g.18gb", "1g.18gb"]
    assert inv.devices[3].name == "NVIDIA H200 MIG 1g.18gb"
    assert {d.parent_index for d in inv.devices} == {0, 1, 2}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("H100", "unknown GPU model"),
        ("H200-141GB[1g.5gb]", "has no MIG profile '1g.5gb'"),
        ("2 x H100-80GB", "cannot read"),
        ("", "lists no GPU"),
    ],
)
def test_bad_simulation_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_simulation(spec)


def test_discover_whole_and_mig_gpus():
    nvml = FakeNVML(
        [
            FakeGpu("NVIDIA H100 80GB HBM3", 81559, uuid="GPU-aaaa"),
            FakeGpu("NVIDIA H200", 143771, [("3g.71gb", 71151), ("1g.18gb", 16375)], "GPU-bbbb"),
        ]
    )
    inv = discover(nvml)
    assert inv.source == "nvml" and not inv.simulated
    assert [(d.id, d.mig_profile, d.memory_mib) for d in inv.devices] == [
        ("0", None, 81559),
        ("MIG-bbbb-0", "3g.71gb", 71151),
        ("MIG-bbbb-1", "1g.18gb", 16375),
    ]
    assert nvml.initialised == 0  # shut down again


def test_discover_without_a_driver_is_an_empty_inventory():
    inv = discover(FakeNVML(driver_loaded=False))
    assert inv.devices == ()
    assert inv.source == "none"
    assert "no GPU found" in inv.note


@pytest.mark.gpu
@pytest.mark.skipif(not real_nvml_available(), reason="needs an NVIDIA GPU and driver")
def test_discover_on_a_real_gpu():
    inv = discover()
    assert inv.source == "nvml"
    assert inv.devices
    for device in inv.devices:
        assert device.memory_mib > 1000
        assert device.name.startswith("NVIDIA")
