"""`gpuaf-run-notebook` inside a job: real papermill on the real python3 kernel, one item
of a sweep, outputs and status in item-<i>/, a failing cell reported and exit non-zero."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from support.notebooks import write_notebook

from gpuaf.notebooks.manifest import Manifest
from gpuaf.run_notebook import item_index, main

pytestmark = pytest.mark.skipif(
    shutil.which("jupyter-kernelspec", path=str(Path(sys.executable).parent)) is None,
    reason="needs jupyter_client and ipykernel's python3 kernel in this environment",
)


@pytest.fixture
def job(tmp_path):
    folder = tmp_path / "gpuaf-jobs" / "train-1"
    write_notebook(folder / "notebook.ipynb")
    manifest = Manifest(
        job_id="train-1",
        name="train",
        user="alice",
        items=({"lr": 0.5, "name": "first"}, {"lr": -1.0, "name": "second"}),
        output_dir=str(folder),
    )
    (folder / "manifest.json").write_text(manifest.text())
    return folder


def outputs_of(path):
    nb = nbformat.read(str(path), as_version=4)
    return nb, "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_an_item_runs_with_its_parameters_injected(job):
    code = main([str(job / "manifest.json"), "--item", "0"])
    assert code == 0
    item = job / "item-0"
    assert sorted(p.name for p in item.iterdir()) == ["executed.ipynb", "log.txt", "status.json"]
    nb, text = outputs_of(item / "executed.ipynb")
    assert "lr=0.5 epochs=3 name=first" in text  # injected value, default kept for epochs
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "lr = 0.5" in injected[0].source
    status = json.loads((item / "status.json").read_text())
    assert status["state"] == "succeeded" and status["exit"] == 0 and status["error"] is None
    assert status["parameters"] == {"lr": 0.5, "name": "first"} and status["finished"]
    log = (item / "log.txt").read_text()
    assert "Executing notebook with kernel: python3" in log and "lr=0.5" in log


def test_a_failing_item_says_which_cell_and_exits_non_zero(job, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # a Slurm job array's second task
    code = main([str(job / "manifest.json")])
    assert code == 1
    status = json.loads((job / "item-1" / "status.json").read_text())
    assert status["state"] == "failed" and status["exit"] == 1
    assert "AssertionError: lr must be positive" in status["error"]
    assert (job / "item-1" / "executed.ipynb").exists()  # kept, with the traceback in it
    assert not (job / "item-0").exists()


def test_the_console_script_in_a_sandbox(job, tmp_path):
    """As HTCondor runs it: the sandbox is the working dir, --output-dir ., --item ProcId."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for name in ("manifest.json", "notebook.ipynb"):
        shutil.copy(job / name, sandbox / name)
    exe = shutil.which("gpuaf-run-notebook", path=str(Path(sys.executable).parent))
    assert exe, "pip install -e . makes the console script"
    result = subprocess.run(
        [exe, "manifest.json", "--item", "0", "--output-dir", "."],
        cwd=sandbox, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (sandbox / "item-0" / "executed.ipynb").exists()


def test_a_wrong_job_is_exit_2(job, tmp_path, capsys):
    assert main([str(job / "manifest.json"), "--item", "7"]) == 2
    assert "item 7 does not exist; the job has items 0 to 1" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    data = {"version": 1, "job_id": "x", "kernel": "python3", "notebook": "../etc/passwd"}
    bad.write_text(json.dumps({**data, "items": [{}], "output_dir": "."}))
    assert main([str(bad)]) == 2
    assert "notebook is missing or not allowed" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.json")]) == 2


def test_item_index_order():
    assert item_index(3, {"GPUAF_ITEM": "1", "SLURM_ARRAY_TASK_ID": "2"}) == 3
    assert item_index(None, {"GPUAF_ITEM": "1", "SLURM_ARRAY_TASK_ID": "2"}) == 1
    assert item_index(None, {"SLURM_ARRAY_TASK_ID": "2"}) == 2
    assert item_index(None, {}) == 0
