"""Small notebooks and settings files for the notebook-job tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

PARAMETERS = "lr = 0.1\nepochs = 3  # passes over the data\nname = 'run'\n"
BODY = "assert lr > 0, 'lr must be positive'\nprint(f'lr={lr} epochs={epochs} name={name}')\n"


def write_notebook(path: Path, parameters: str | None = PARAMETERS, body: str = BODY) -> Path:
    nb = nbformat.v4.new_notebook()
    cells = []
    if parameters is not None:
        cell = nbformat.v4.new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        cells.append(cell)
    cells.append(nbformat.v4.new_code_cell(body))
    nb.cells = cells
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


SITES = {
    "nordic": {
        "kind": "arc",
        "endpoint": "arc.example.org",
        "token_file": "/etc/gpuaf/grid-token",
        "queue": "gpu",
        "arc_rte": ["ENV/PROXY"],
    },
    "osg-ce": {"kind": "htcondor-ce", "endpoint": "ce.example.org:9619", "queue": "gpu"},
    "ce-default-port": {"kind": "htcondor-ce", "endpoint": "ce2.example.org"},
}


PROFILES = [
    {"name": "cpu", "display_name": "CPU", "kind": "cpu", "cpus": 2, "memory": "4G"},
    {
        "name": "mig-1g",
        "display_name": "H200 MIG 1g.18gb",
        "kind": "mig",
        "mig_profile": "1g.18gb",
        "gpu_models": ["H200"],
        "memory": "16G",
        "walltime": "4h",
    },
    {
        "name": "mps-25",
        "display_name": "MPS 25 %",
        "kind": "mps",
        "mps_thread_percentage": 25,
        "mps_pinned_memory": "20G",
    },
    {"name": "gpu-2", "display_name": "2 GPUs", "kind": "gpu", "gpus": 2, "groups": ["higgs"]},
]


def write_settings(path: Path, backend: str = "htcondor", **notebooks) -> Path:
    data = {
        "iam": {"issuer": "http://127.0.0.1:9/", "client_id": "gpuaf"},
        "groups": {"higgs": {}, "neutrino": {}},
        "profiles": PROFILES,
        "backend": {"kind": backend, "slurm": {"partition": "gpu", "bin_dir": "/opt/slurm/bin"}},
        "sessions": {"image": "ghcr.io/collab/analysis:2.1"},
        "notebooks": {"grid_sites": SITES, **notebooks},
    }
    path.write_text(yaml.safe_dump(data))
    return path
