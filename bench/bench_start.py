"""Time from "start" to a usable JupyterLab: gpuaf against stock batchspawner.

    .venv/bin/python bench/bench_start.py [--rounds 5] [--quick]

Three portals run side by side, started once (needs root and slurm-wlm, like the tests):

  local-gpuaf  gpuaf's SliceSpawner on the ``local`` backend, simulated GPUs
  slurm-gpuaf  gpuaf's SliceSpawner on the ``slurm`` backend, a scratch Slurm
  slurm-stock  a plain JupyterHub with ``batchspawner.SlurmSpawner`` on its defaults,
               on the same scratch Slurm, asking for the same resources

Each round starts one server on each (interleaved: A, B, C, A, B, C, ...), timing the
POST /hub/api/users/<user>/server until an authenticated GET of /user/<user>/api/status
through the proxy answers 200, then stops it and waits until the hub, the process table
and Slurm have forgotten it. One untimed start per portal warms it up first. Reported:
median/min/max seconds per portal and the ratios ours/stock. Figures go to
bench/results/start.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the stack and scratch Slurm live in tests/support
sys.path.insert(0, str(ROOT / "bench"))

from start_variants import PROFILES, STOCK_REQUEST, gpuaf_portal, stock_portal  # noqa: E402
from support.slurm import slurm_unavailable, start_slurm  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "start.json"
ORDER = ("local-gpuaf", "slurm-gpuaf", "slurm-stock")


def summary(samples: list[float]) -> dict:
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "samples_s": samples,
    }


def machine(slurm) -> dict:
    libraries = ("gpuaf", "jupyterhub", "batchspawner", "jupyter_server", "jupyterlab")
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: version(name) for name in libraries},
        "slurm": slurm.run("sbatch", "--version").strip(),
    }


def run(rounds: int, base: Path) -> dict:
    with contextlib.ExitStack() as cleanup:
        print("starting a scratch Slurm and three portals ...", flush=True)
        slurm = start_slurm(base / "slurm")
        cleanup.callback(slurm.stop)
        portals = {
            "local-gpuaf": gpuaf_portal(base / "local", None, cleanup),
            "slurm-gpuaf": gpuaf_portal(base / "gpuaf-slurm", slurm, cleanup),
            "slurm-stock": stock_portal(base / "stock", slurm, cleanup),
        }
        for name in ORDER:  # warm-up: first imports, first job on the node
            print(f"warm-up: {name} {portals[name].time_start():.1f} s", flush=True)
            portals[name].stop()
        samples: dict[str, list[float]] = {name: [] for name in ORDER}
        for r in range(1, rounds + 1):
            for name in ORDER:
                seconds = portals[name].time_start()
                portals[name].stop()
                samples[name].append(seconds)
                print(f"round {r}/{rounds}: {name} {seconds:.1f} s", flush=True)
        facts = machine(slurm)
    figures = {name: summary(samples[name]) for name in ORDER}
    stock = figures["slurm-stock"]["median_s"]
    return {
        "rounds": rounds,
        "measured": "POST /hub/api/users/<user>/server until GET /user/<user>/api/status "
        "through the proxy answers 200 (token auth)",
        "slice": {"gpuaf_profile": PROFILES[0], "batchspawner": STOCK_REQUEST},
        "variants": figures,
        "ratio_local_gpuaf_over_slurm_stock": figures["local-gpuaf"]["median_s"] / stock,
        "ratio_slurm_gpuaf_over_slurm_stock": figures["slurm-gpuaf"]["median_s"] / stock,
        "machine": facts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    reason = slurm_unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    rounds = 1 if args.quick else args.rounds
    try:
        with tempfile.TemporaryDirectory(prefix="gpuaf-bench-") as tmp:
            base = Path(tmp)
            base.chmod(0o755)  # munged (as munge) must reach the scratch Slurm's folder
            result = run(rounds, base)
    except KeyboardInterrupt:  # every process and the scratch Slurm are stopped by now
        print("interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nstart to usable JupyterLab, seconds ({rounds} rounds, {os.cpu_count()} CPUs)")
    print(f"{'variant':<13} {'median':>7} {'min':>7} {'max':>7}")
    for name in ORDER:
        f = result["variants"][name]
        print(f"{name:<13} {f['median_s']:7.2f} {f['min_s']:7.2f} {f['max_s']:7.2f}")
    print(f"ratio local-gpuaf / slurm-stock: {result['ratio_local_gpuaf_over_slurm_stock']:.2f}")
    print(f"ratio slurm-gpuaf / slurm-stock: {result['ratio_slurm_gpuaf_over_slurm_stock']:.2f}")
    print(f"figures: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
