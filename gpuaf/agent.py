"""The session agent: samples the session's GPUs through NVML and reports to the portal API.

``gpuaf-job`` starts it next to the token keeper when ``GPUAF_PORTAL_URL`` is set. Every
``GPUAF_AGENT_INTERVAL`` seconds (default 30) it reads, for the devices named in
``CUDA_VISIBLE_DEVICES`` (indexes, ``GPU-…`` or ``MIG-…`` UUIDs), memory used/total,
utilisation, power and energy, and posts them with the session's own hub token to
``$GPUAF_PORTAL_URL/api/v1/sessions/$GPUAF_SESSION_ID/samples``.

NVML does not give utilisation (nor, usually, power) of a MIG instance: those are
recorded as missing and the note says why. A MIG instance's energy is its parent GPU's
counter, i.e. whole-GPU energy. Without a driver, without a GPU assigned, or with
simulated GPUs, the agent reports that once (a note, no samples). It stops when its
parent, the session's server, is gone.

It also reports the session's *activity*, which idle culling weighs: from the session's
own Jupyter server (its parent, found by the port it listens on) the kernels — busy ones
count as active now — and terminals with their last activity. Those reads pass
``no_track_activity`` so that they do not count as activity themselves; an open browser
tab polling the server is not activity either. Activity is posted only when it changed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpuaf.session_activity import server_activity, server_port

DEFAULT_INTERVAL_S = 30.0
MAX_SAMPLES = 256  # per POST, as the API accepts


@dataclass(frozen=True)
class Sample:
    device: str  # as named in CUDA_VISIBLE_DEVICES
    at: dt.datetime
    memory_used_mib: int
    memory_total_mib: int
    utilisation_pct: float | None  # None: NVML does not support it here (MIG)
    power_w: float | None
    energy_j: float | None  # on MIG: the parent GPU's counter
    mig: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "at": self.at.isoformat(),
            "memory_used_mib": self.memory_used_mib,
            "memory_total_mib": self.memory_total_mib,
            "utilisation_pct": self.utilisation_pct,
            "power_w": self.power_w,
            "energy_j": self.energy_j,
        }


def visible_devices(environ: dict[str, str]) -> list[str]:
    """The devices of ``CUDA_VISIBLE_DEVICES``; none when it is unset or empty."""
    value = environ.get("CUDA_VISIBLE_DEVICES", "")
    return [d.strip() for d in value.split(",") if d.strip() and d.strip() != "-1"]


def _handle(nvml: ModuleType, device_id: str) -> object:
    if device_id.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(device_id))
    return nvml.nvmlDeviceGetHandleByUUID(device_id)


def _optional(nvml: ModuleType, call: Any, handle: object) -> Any:
    """The call's answer, or None where NVML does not support it on this device."""
    try:
        return call(handle)
    except nvml.NVMLError_NotSupported:
        return None


def _is_mig(nvml: ModuleType, handle: object) -> bool:
    try:
        return bool(nvml.nvmlDeviceIsMigDeviceHandle(handle))
    except nvml.NVMLError:
        return False


def sample(nvml: ModuleType, device_ids: list[str]) -> list[Sample]:
    """One sample per device; ``nvml`` must be initialised."""
    out = []
    for device_id in device_ids:
        handle = _handle(nvml, device_id)
        mig = _is_mig(nvml, handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        rates = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
        power_mw = _optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
        board = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle) if mig else handle
        energy_mj = _optional(nvml, nvml.nvmlDeviceGetTotalEnergyConsumption, board)
        out.append(
            Sample(
                device=device_id,
                at=dt.datetime.now(dt.UTC),
                memory_used_mib=int(memory.used // 2**20),
                memory_total_mib=int(memory.total // 2**20),
                utilisation_pct=None if rates is None else float(rates.gpu),
                power_w=None if power_mw is None else power_mw / 1000,
                energy_j=None if energy_mj is None else energy_mj / 1000,
                mig=mig,
            )
        )
    return out


def describe(samples: list[Sample]) -> str | None:
    """What the numbers do not say by themselves (said once, in the first report)."""
    parts = []
    migs = [s.device for s in samples if s.mig]
    if any(s.utilisation_pct is None for s in samples):
        parts.append(
            "GPU utilisation is not available"
            + (" on MIG instances (NVML: not supported)" if migs else " (NVML: not supported)")
        )
    if any(s.power_w is None for s in samples):
        parts.append("power is not available (NVML: not supported)")
    if migs and any(s.energy_j is not None for s in samples if s.mig):
        parts.append(f"energy of {', '.join(migs)} is the whole parent GPU's")
    return "; ".join(parts) + "." if parts else None


def build_payload(
    note: str | None, samples: list[Sample], activity: dict[str, Any] | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "note": note,
        "samples": [s.payload() for s in samples[:MAX_SAMPLES]],
    }
    if activity is not None:
        payload["activity"] = activity
    return payload


def open_nvml(
    environ: dict[str, str], device_ids: list[str], nvml: ModuleType | None = None
) -> tuple[ModuleType | None, str]:
    """An initialised NVML, or None and why there is nothing to sample."""
    if environ.get("GPUAF_SIMULATED_GPUS") == "1":
        return None, "Simulated GPUs: nothing to sample."
    if not device_ids:
        return None, "No GPU assigned to this session (CUDA_VISIBLE_DEVICES is empty)."
    if nvml is None:
        try:
            with warnings.catch_warnings():  # the pynvml shim announces its own deprecation
                warnings.simplefilter("ignore", FutureWarning)
                import pynvml as nvml
        except ImportError:
            return None, "NVML (pynvml) is not installed in the session's environment."
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return None, f"No GPU driver found (NVML: {exc})."
    if not nvml.nvmlDeviceGetCount():
        nvml.nvmlShutdown()
        return None, "NVML sees no GPU."
    return nvml, ""


def samples_url(environ: dict[str, str]) -> str:
    base = environ["GPUAF_PORTAL_URL"].rstrip("/")
    return f"{base}/api/v1/sessions/{environ['GPUAF_SESSION_ID']}/samples"


def post(environ: dict[str, str], payload: dict[str, Any], timeout: float = 20) -> int:
    """POST a report; the HTTP status (0 when the portal could not be reached)."""
    request = urllib.request.Request(  # noqa: S310 - the portal's own http(s) URL
        samples_url(environ),
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Authorization": f"token {environ['JUPYTERHUB_API_TOKEN']}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError) as exc:
        print(f"gpuaf session agent: portal not reached ({exc})", file=sys.stderr)
        return 0


def _permanent(status: int) -> bool:
    return 400 <= status < 500 and status not in (408, 429)


def run(environ: dict[str, str], parent: int, nvml: ModuleType | None = None) -> int:
    interval = float(environ.get("GPUAF_AGENT_INTERVAL") or DEFAULT_INTERVAL_S)
    device_ids = visible_devices(environ)
    nvml, why = open_nvml(environ, device_ids, nvml)
    note: str | None = why or None
    note_sent = False
    last_activity: dict[str, Any] | None = None
    try:
        while os.getppid() == parent:
            samples: list[Sample] = []
            if nvml is not None:
                try:
                    samples = sample(nvml, device_ids)
                except nvml.NVMLError as exc:
                    print(f"gpuaf session agent: NVML failed ({exc})", file=sys.stderr)
                note = note or describe(samples)
            activity = server_activity(environ, server_port(parent))
            changed = activity is not None and activity != last_activity
            if samples or changed or (note and not note_sent):
                payload = build_payload(None if note_sent else note, samples, activity)
                status = post(environ, payload)
                if 200 <= status < 300:
                    note_sent = note_sent or note is not None
                    last_activity = activity
                if _permanent(status):
                    print(f"gpuaf session agent: the portal refused ({status}); stopping",
                          file=sys.stderr)  # fmt: skip
                    return 1
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and os.getppid() == parent:
                time.sleep(min(1.0, interval))
    finally:
        if nvml is not None:
            nvml.nvmlShutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(run(dict(os.environ), os.getppid()))
