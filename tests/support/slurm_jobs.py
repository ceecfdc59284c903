"""Profiles, values and the job command shared by the Slurm backend's tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

from gpuaf.profiles import SliceProfile
from gpuaf.spawners.backends.base import JobSpec, JobState

NODE = socket.gethostname().split(".")[0]  # the scratch cluster's one node
CANARY = "GPUAF_TEST_HUB_CANARY"
SECRET = "tok-3f9a81c2-do-not-leak"
NASTY = "a 'quoted' \"double\" ; $(touch /tmp/gpuaf-pwned) `id` a,b=c \\ %j * $HOME"


def profile(**kw) -> SliceProfile:
    kw.setdefault("memory", "100M")
    kw.setdefault("walltime", "10m")
    return SliceProfile(**{"display_name": kw["name"].upper(), **kw})


CPU = profile(name="cpu", kind="cpu")
GPU1 = profile(name="gpu-1", kind="gpu", gpus=1)
GPU2 = profile(name="gpu-2", kind="gpu", gpus=2)
MIG = profile(name="mig-1g", kind="mig", mig_profile="1g.18gb")
MPS25 = profile(name="mps-25", kind="mps", mps_thread_percentage=25, mps_pinned_memory="20G")
MPS50 = profile(name="mps-50", kind="mps", mps_thread_percentage=50)

# the job's command: dump environment, argv and the secrets file, then maybe sleep
DUMP = """
import json, os, stat, sys, time
out, nap = sys.argv[1], float(sys.argv[2])
seen = {"env": dict(os.environ), "argv": sys.argv[3:], "cwd": os.getcwd()}
path = os.environ.get("GPUAF_SECRETS_FILE")
if path:
    seen["secrets_mode"] = oct(stat.S_IMODE(os.stat(path).st_mode))
    with open(path) as f, open(out + ".secrets", "w") as copy:
        copy.write(f.read())
with open(out + ".tmp", "w") as f:
    json.dump(seen, f)
os.rename(out + ".tmp", out)
time.sleep(nap)
"""


def spec(p: SliceProfile, tmp_path: Path, *, nap: float = 0, tag: str = "x", **kw) -> JobSpec:
    out = tmp_path / f"seen-{p.name}-{tag}-{time.monotonic_ns()}.json"
    extra = kw.pop("args", ())
    return JobSpec(
        name=kw.pop("name", f"gpuaf-test-{p.name}"),
        user="alice",
        profile=p,
        command=(sys.executable, "-c", DUMP, str(out), str(nap), *extra),
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **kw.pop("env", {})},
        workdir=tmp_path,
        tags={"portal": "gpuaf", "session": tag, **kw.pop("tags", {})},
        **kw,
    )


def seen_by(job_spec: JobSpec, timeout: float = 30) -> dict:
    out = Path(job_spec.command[3])
    deadline = time.monotonic() + timeout
    while not out.exists():
        assert time.monotonic() < deadline, f"the job never wrote {out}"
        time.sleep(0.05)
    return json.loads(out.read_text())


async def wait_for(backend, job: str, *states: JobState, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        status = (await backend.status([job]))[job]
        if status.state in states:
            return status
        assert time.monotonic() < deadline, f"job {job} stayed {status}"
        await asyncio.sleep(0.1)
