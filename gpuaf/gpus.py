"""Facts about data-centre GPUs and the inventory of a machine.

The model table gives, per GPU model, its memory and the MIG profiles it can be cut
into (name → memory in MiB and instances per GPU). Sources: NVIDIA's MIG user guide,
``nvidia-smi mig -lgip`` captures and mig-parted's layouts. Profile names are not
memory sizes: an H200 ``1g.18gb`` instance has 16 GiB.

An :class:`Inventory` lists the devices a node offers: whole GPUs and MIG instances.
It comes from NVML (:func:`discover`) or, for demonstrations without GPUs, from an
explicit simulation spec (:func:`parse_simulation`), much as HTCondor's own GPU
discovery can simulate devices.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class MigProfile:
    name: str
    memory_mib: int
    per_gpu: int


@dataclass(frozen=True)
class GpuModel:
    key: str
    device_name: str
    memory_mib: int
    capability: float
    mig: dict[str, MigProfile] = field(default_factory=dict)


def _mig(*rows: tuple[str, int, int]) -> dict[str, MigProfile]:
    return {name: MigProfile(name, mib, n) for name, mib, n in rows}


_A100_80_MIG = _mig(
    ("1g.10gb", 9856, 7),
    ("1g.10gb+me", 9856, 1),
    ("1g.20gb", 19968, 4),
    ("2g.20gb", 19968, 3),
    ("3g.40gb", 40192, 2),
    ("4g.40gb", 40192, 1),
    ("7g.80gb", 80384, 1),
)

MODELS: dict[str, GpuModel] = {
    m.key: m
    for m in (
        GpuModel(
            "A100-40GB",
            "NVIDIA A100-SXM4-40GB",
            40536,
            8.0,
            _mig(
                ("1g.5gb", 4864, 7),
                ("1g.5gb+me", 4864, 1),
                ("1g.10gb", 9856, 4),
                ("2g.10gb", 9856, 3),
                ("3g.20gb", 19968, 2),
                ("4g.20gb", 19968, 1),
                ("7g.40gb", 40192, 1),
            ),
        ),
        GpuModel("A100-80GB", "NVIDIA A100-SXM4-80GB", 81920, 8.0, _A100_80_MIG),
        GpuModel(
            "H100-80GB",
            "NVIDIA H100 80GB HBM3",
            81559,
            9.0,
            _mig(
                ("1g.10gb", 10240, 7),
                ("1g.10gb+me", 10240, 1),
                ("1g.20gb", 20480, 4),
                ("2g.20gb", 20480, 3),
                ("3g.40gb", 40960, 2),
                ("4g.40gb", 40960, 1),
                ("7g.80gb", 81559, 1),
            ),
        ),
        GpuModel(
            "H200-141GB",
            "NVIDIA H200",
            143771,
            9.0,
            _mig(
                ("1g.18gb", 16384, 7),
                ("1g.18gb+me", 16384, 1),
                ("1g.35gb", 33024, 4),
                ("2g.35gb", 33024, 3),
                ("3g.71gb", 71168, 2),
                ("4g.71gb", 71168, 1),
                ("7g.141gb", 143771, 1),
            ),
        ),
    )
}


def known_mig_profiles() -> dict[str, list[str]]:
    """MIG profile name → the model keys that offer it."""
    out: dict[str, list[str]] = {}
    for model in MODELS.values():
        for name in model.mig:
            out.setdefault(name, []).append(model.key)
    return out


@dataclass(frozen=True)
class Device:
    """One bookable device: a whole GPU or one MIG instance of a GPU."""

    id: str  # what CUDA_VISIBLE_DEVICES takes: an index, or a MIG-... UUID
    name: str  # NVML's device name, e.g. "NVIDIA H200 MIG 1g.18gb"
    memory_mib: int
    parent_index: int
    mig_profile: str | None = None
    simulated: bool = False

    @property
    def is_mig(self) -> bool:
        return self.mig_profile is not None


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...] = ()
    source: str = "none"  # "nvml", "simulated" or "none"
    note: str = ""

    @property
    def simulated(self) -> bool:
        return self.source == "simulated"


_SIM_ITEM = re.compile(
    r"^(?:(?P<count>[1-9][0-9]?)x)?(?P<model>[A-Za-z0-9-]+)(?:\[(?P<mig>[^\]]*)\])?$"
)


def parse_simulation(spec: str) -> Inventory:
    """Build a simulated inventory from a spec like ``2xH100-80GB,H200-141GB[3g.71gb,2x1g.18gb]``.

    Each comma-separated item is ``[N x]MODEL`` for N whole GPUs or ``MODEL[profiles]``
    for one GPU cut into MIG instances (``2x1g.18gb`` repeats a profile).
    """
    devices: list[Device] = []
    for item in _split_top_level(spec):
        m = _SIM_ITEM.match(item.strip())
        if not m:
            raise ValueError(
                f"cannot read {item!r}: write [N x]MODEL or MODEL[profile,...], "
                f"e.g. 2xH100-80GB or H200-141GB[3g.71gb,2x1g.18gb]"
            )
        model = MODELS.get(m["model"])
        if model is None:
            raise ValueError(f"unknown GPU model {m['model']!r}; known: {', '.join(MODELS)}")
        count = int(m["count"] or 1)
        for _ in range(count):
            index = len({d.parent_index for d in devices})
            if m["mig"] is None:
                devices.append(
                    Device(str(index), model.device_name, model.memory_mib, index, simulated=True)
                )
                continue
            for k, profile in enumerate(_expand_mig(m["mig"], model)):
                mig = model.mig[profile]
                uuid = f"MIG-sim{index:02d}-{k:02d}"
                devices.append(
                    Device(
                        uuid,
                        f"{model.device_name} MIG {profile}",
                        mig.memory_mib,
                        index,
                        profile,
                        simulated=True,
                    )
                )
    if not devices:
        raise ValueError("the simulation spec lists no GPU")
    return Inventory(tuple(devices), "simulated", f"simulated GPUs: {spec}")


def _split_top_level(spec: str) -> list[str]:
    items, depth, cur = [], 0, ""
    for ch in spec:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i for i in items if i.strip()]


def _expand_mig(text: str, model: GpuModel) -> list[str]:
    out: list[str] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.match(r"^(\d+)x(.+)$", part)
        n, name = (m[1], m[2]) if m else ("1", part)
        if name not in model.mig:
            raise ValueError(
                f"{model.key} has no MIG profile {name!r}; it has: {', '.join(model.mig)}"
            )
        out.extend([name] * int(n))
    return out


def discover(nvml: ModuleType | None = None) -> Inventory:
    """Read the machine's GPUs through NVML (``pynvml``); an empty inventory without one."""
    if nvml is None:
        with warnings.catch_warnings():  # the pynvml shim announces its own deprecation
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml as nvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return Inventory((), "none", f"no GPU found (NVML: {exc})")
    try:
        devices: list[Device] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            if _mig_enabled(nvml, handle):
                devices.extend(_mig_devices(nvml, handle, index))
            else:
                total = nvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20
                devices.append(Device(str(index), name, int(total), index))
        return Inventory(tuple(devices), "nvml", f"{len(devices)} device(s) found by NVML")
    finally:
        nvml.nvmlShutdown()


def _mig_enabled(nvml: ModuleType, handle: object) -> bool:
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
    except nvml.NVMLError:  # not supported on pre-Ampere GPUs
        return False
    return current == nvml.NVML_DEVICE_MIG_ENABLE


def _mig_devices(nvml: ModuleType, handle: object, index: int) -> list[Device]:
    out = []
    for k in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, k)
        except nvml.NVMLError:  # empty index: no instance there
            continue
        name = _text(nvml.nvmlDeviceGetName(mig))
        profile = name.rsplit(" MIG ", 1)[-1] if " MIG " in name else None
        total = nvml.nvmlDeviceGetMemoryInfo(mig).total // 2**20
        out.append(Device(_text(nvml.nvmlDeviceGetUUID(mig)), name, int(total), index, profile))
    return out


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
