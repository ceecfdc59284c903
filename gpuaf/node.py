"""``gpuaf node inspect``: what a GPU worker offers, and the HTCondor config to publish it.

Run on an execute node: it reads the GPUs through NVML (whole GPUs and MIG instances,
as :func:`gpuaf.gpus.discover` does) and prints them, then the startd configuration
that makes HTCondor publish them the way the portal's slice profiles expect: whole GPUs
and MIG instances as devices (``use feature : GPUs``), or GPUs cut into MPS shares
(``-divide N``, a ``GPUSharingMode = "mps"`` slot attribute and NVIDIA's MPS control
daemon started with the pipe directory the portal gives its jobs).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from types import ModuleType

from gpuaf.gpus import Device, Inventory, discover
from gpuaf.units import format_mib

DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"  # noqa: S108 - NVIDIA's default, on the worker
MAX_MPS_SHARES = 48  # MPS client contexts per device on Volta and later
_PATH = re.compile(r"^/[A-Za-z0-9_./-]*$")


@dataclass(frozen=True)
class NodeReport:
    hostname: str
    inventory: Inventory

    @property
    def devices(self) -> tuple[Device, ...]:
        return self.inventory.devices

    @property
    def whole(self) -> list[Device]:
        return [d for d in self.devices if not d.is_mig]

    @property
    def mig(self) -> list[Device]:
        return [d for d in self.devices if d.is_mig]

    def as_dict(self) -> dict:
        return {
            "hostname": self.hostname,
            "source": self.inventory.source,
            "note": self.inventory.note,
            "devices": [asdict(d) for d in self.devices],
        }


def inspect(nvml: ModuleType | None = None) -> NodeReport:
    """The devices NVML shows on this node (an empty report without a driver)."""
    if nvml is None:
        with warnings.catch_warnings():  # the pynvml shim announces its own deprecation
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml as nvml
    try:
        inventory = discover(nvml)
    except nvml.NVMLError as exc:  # the driver answered init, then failed
        inventory = Inventory((), "none", f"no GPU found (NVML: {exc})")
    return NodeReport(socket.gethostname(), inventory)


def _nvml_detail(report: NodeReport) -> str:
    m = re.search(r"\((NVML: .*)\)\s*$", report.inventory.note)
    if m:
        return m[1]
    return "NVML: no device" if report.inventory.source == "nvml" else report.inventory.note


def _names(devices: list[Device]) -> str:
    counts = Counter(d.name for d in devices)
    return ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())


def _mps_unit(pipe_directory: str) -> list[str]:
    return [
        "# HTCondor does no MPS set-up itself. Run NVIDIA's MPS control daemon on this",
        "# node with the pipe directory the portal gives its jobs",
        "# (settings: backend.htcondor.mps_pipe_directory), e.g. as a systemd unit",
        "# /etc/systemd/system/nvidia-mps.service:",
        "#   [Unit]",
        "#   Description=NVIDIA MPS control daemon for HTCondor GPU shares",
        "#   Before=condor.service",
        "#   [Service]",
        "#   Type=forking",
        f"#   Environment=CUDA_MPS_PIPE_DIRECTORY={pipe_directory}",
        "#   Environment=CUDA_MPS_LOG_DIRECTORY=/var/log/nvidia-mps",
        f"#   ExecStartPre=/usr/bin/mkdir -p {pipe_directory} /var/log/nvidia-mps",
        "#   ExecStart=/usr/bin/nvidia-cuda-mps-control -d",
        "#   ExecStop=/bin/sh -c 'echo quit | /usr/bin/nvidia-cuda-mps-control'",
        "#   Restart=on-failure",
        "#   [Install]",
        "#   WantedBy=multi-user.target",
        "# then: systemctl daemon-reload && systemctl enable --now nvidia-mps",
        "# MPS serves one Linux user per GPU at a time; portal jobs run as the portal's",
        "# account and share it. A fault in one client affects all clients of that GPU.",
    ]


def htcondor_config(
    report: NodeReport,
    mps_shares: int | None = None,
    mps_pipe_directory: str = DEFAULT_PIPE_DIRECTORY,
) -> str:
    """The startd configuration that publishes this node's GPUs for the portal."""
    if not report.devices:
        return f"# No NVIDIA GPU found on this node ({_nvml_detail(report)}): nothing to publish.\n"
    if mps_shares is not None and not 2 <= mps_shares <= MAX_MPS_SHARES:
        raise ValueError(f"--mps-shares must be 2 to {MAX_MPS_SHARES} (got {mps_shares})")
    if not _PATH.match(mps_pipe_directory):
        raise ValueError(f"the MPS pipe directory {mps_pipe_directory!r} is not a plain path")
    found = []
    if report.whole:
        found.append(f"{len(report.whole)} whole GPU(s): {_names(report.whole)}")
    if report.mig:
        parents = len({d.parent_index for d in report.mig})
        found.append(f"{len(report.mig)} MIG instance(s) on {parents} GPU(s): {_names(report.mig)}")
    lines = [
        f"# HTCondor startd configuration for the GPUs of {report.hostname},",
        "# written by `gpuaf node inspect`. Save it as e.g.",
        "# /etc/condor/config.d/50-gpuaf-gpus.conf, then `condor_restart -daemon startd`",
        "# (the GPU list is read when the startd starts).",
        *(f"# Found by NVML: {f}." for f in found),
        "",
        "use feature : GPUs",
        "# -extra adds clock and core counts to each device's properties",
        "GPU_DISCOVERY_EXTRA = $(GPU_DISCOVERY_EXTRA) -extra",
    ]
    if report.mig:
        lines += [
            "",
            "# MIG: condor_gpu_discovery reports every MIG instance as a device of its own",
            '# (the GPU itself is skipped), with DeviceName "<GPU name> MIG <profile>" and the',
            "# instance's memory as GlobalMemoryMb; the portal's MIG slices match on these.",
            "# Create the instances before the startd starts (e.g. nvidia-mig-parted at",
            "# boot) and restart the startd after changing the layout.",
        ]
    if mps_shares:
        lines += [
            "",
            f"# MPS: every GPU is offered as {mps_shares} shares (-divide: GlobalMemoryMb is",
            "# divided, DeviceMemoryMb keeps the full size). Add -packed to fill one GPU's",
            "# shares before the next one's. Whole-GPU slices do not match divided GPUs.",
            f"GPU_DISCOVERY_EXTRA = $(GPU_DISCOVERY_EXTRA) -divide {mps_shares}",
            'GPUSharingMode = "mps"',
            "STARTD_ATTRS = $(STARTD_ATTRS) GPUSharingMode",
            *_mps_unit(mps_pipe_directory),
        ]
        if report.mig:
            lines += [
                "# Warning: -divide also cuts the MIG instances; MPS on MIG needs one control",
                "# daemon per instance, each with its own pipe directory, not set up here.",
            ]
    return "\n".join(lines) + "\n"


def device_table(report: NodeReport) -> str:
    inv = report.inventory
    if not inv.devices:
        return f"{report.hostname}: {inv.note}"
    rows = [("GPU", "DEVICE ID", "NAME", "MEMORY", "MIG PROFILE")]
    for d in inv.devices:
        rows.append(
            (str(d.parent_index), d.id, d.name, format_mib(d.memory_mib), d.mig_profile or "-")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return f"{report.hostname}: {inv.note}\n" + "\n".join(lines)


def main(argv: list[str] | None = None, nvml: ModuleType | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpuaf node inspect",
        description="Show this node's GPUs and the HTCondor configuration that publishes them.",
    )
    parser.add_argument(
        "--mps-shares",
        type=int,
        metavar="N",
        help=f"offer every GPU as N MPS shares (2-{MAX_MPS_SHARES}) instead of whole GPUs",
    )
    parser.add_argument(
        "--mps-pipe-directory",
        default=DEFAULT_PIPE_DIRECTORY,
        metavar="DIR",
        help=f"CUDA_MPS_PIPE_DIRECTORY of the MPS daemon (default {DEFAULT_PIPE_DIRECTORY})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    report = inspect(nvml)
    try:
        config = htcondor_config(report, args.mps_shares, args.mps_pipe_directory)
    except ValueError as exc:
        print(f"gpuaf node inspect: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**report.as_dict(), "htcondor_config": config}, indent=2))
    else:
        print(device_table(report))
        print()
        print(config, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
