"""FakeNVML: a test double of the part of pynvml's surface that gpuaf uses.

It answers like NVML on a machine with the GPUs it is given; tests check that every
function it offers exists in the real pynvml with the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml


@dataclass
class FakeGpu:
    name: str
    memory_mib: int
    migs: list[tuple[str, int]] | None = None  # (profile, MiB) per MIG instance
    uuid: str = "GPU-fake"
    used_mib: int = 0  # of the whole GPU, and of each MIG instance (at most its size)
    utilisation_pct: int = 0  # whole GPUs only: NotSupported on MIG instances
    power_mw: int | None = None  # None: NotSupported; always NotSupported on MIG instances
    energy_mj: int | None = None  # None: NotSupported (pre-Volta)


@dataclass
class _Handle:
    gpu: FakeGpu
    mig: tuple[int, str, int] | None = None


@dataclass
class FakeNVML:
    gpus: list[FakeGpu] = field(default_factory=list)
    driver_loaded: bool = True
    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE
    initialised: int = 0

    def nvmlInit(self):
        if not self.driver_loaded:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised += 1

    def nvmlShutdown(self):
        self.initialised -= 1

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return _Handle(self.gpus[index])

    def nvmlDeviceGetName(self, handle):
        if handle.mig:
            return f"{handle.gpu.name} MIG {handle.mig[1]}"
        return handle.gpu.name

    def nvmlDeviceGetUUID(self, handle):
        if handle.mig:
            return f"MIG-{handle.gpu.uuid[4:]}-{handle.mig[0]}"
        return handle.gpu.uuid

    def nvmlDeviceGetMigMode(self, device):
        on = device.gpu.migs is not None
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if on else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device):
        return 7 if device.gpu.migs is not None else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device, index):
        migs = device.gpu.migs or []
        if index >= len(migs):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        profile, mib = migs[index]
        return _Handle(device.gpu, (index, profile, mib))

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        mib = handle.mig[2] if handle.mig else handle.gpu.memory_mib
        total = mib * 2**20
        used = min(handle.gpu.used_mib, mib) * 2**20
        return SimpleNamespace(total=total, free=total - used, used=used)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for gpu in self.gpus:
            device = _Handle(gpu)
            if self.nvmlDeviceGetUUID(device) == uuid:
                return device
            for index in range(len(gpu.migs or [])):
                mig = self.nvmlDeviceGetMigDeviceHandleByIndex(device, index)
                if self.nvmlDeviceGetUUID(mig) == uuid:
                    return mig
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceIsMigDeviceHandle(self, device):
        return device.mig is not None

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice):
        if migDevice.mig is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(migDevice.gpu)

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle.mig:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(gpu=handle.gpu.utilisation_pct, memory=0)

    def nvmlDeviceGetPowerUsage(self, handle):
        if handle.mig or handle.gpu.power_mw is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.gpu.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if handle.mig or handle.gpu.energy_mj is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.gpu.energy_mj


def real_nvml_available() -> bool:
    """Whether this machine has an NVIDIA driver that NVML can load (for `gpu` tests)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True
