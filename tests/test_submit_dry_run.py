"""`gpuaf submit --dry-run`: the exact HTCondor description (local pool, ARC CE,
HTCondor-CE) read back by the real htcondor2.Submit, the sbatch job array, injection
attempts refused or quoted, and the command end to end; nothing written, nothing submitted."""

from __future__ import annotations

import json
import os
import re

import htcondor2
import pytest
from support.notebooks import write_notebook, write_settings
from test_backend_htcondor_submit import env_of, parse_v2

from gpuaf.cli import main
from gpuaf.errors import PublicError
from gpuaf.notebooks import htcondor, slurm
from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.plan import plan_job
from gpuaf.settings import load_settings


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home" / "alice"
    write_notebook(home / "train.ipynb")
    monkeypatch.chdir(home)  # notebook paths are relative to where the user is
    return home


@pytest.fixture
def settings_file(tmp_path):
    return write_settings(tmp_path / "settings.yaml")


@pytest.fixture
def settings(settings_file):
    return load_settings(settings_file)


def plan(settings, home, **kw):
    args = {"notebook": "train.ipynb", "home": home, "user": "alice", "groups": ["higgs"],
            "slice_name": "mig-1g", "job_id": "train-1"} | kw  # fmt: skip
    return plan_job(settings, **args)


def read_back(sub: htcondor2.Submit) -> tuple[dict[str, str], htcondor2.Submit]:
    """The description as condor_submit would read its text."""
    again = htcondor2.Submit(str(sub))
    assert dict(again) == dict(sub)
    return dict(again), again


ITEM_ARGS = ["gpuaf-job", "gpuaf-run-notebook", "manifest.json", "--item", "$(ProcId)",
             "--output-dir", "."]  # fmt: skip


# -- HTCondor ------------------------------------------------------------------------
def test_local_pool_description_is_one_container_cluster_of_n_items(settings, home):
    p = plan(settings, home, sweeps=["lr=[0.1,0.01,0.001]"], params=['name="a b"'])
    sub, n = htcondor.description(p, settings)
    desc, again = read_back(sub)
    assert n == 3 and again.getQArgs() == "3" and str(sub).endswith("\nqueue 3\n")
    assert desc["universe"] == "container"
    assert desc["container_image"] == "docker://ghcr.io/collab/analysis:2.1"
    assert desc["executable"] == "/usr/bin/env" and desc["transfer_executable"] == "false"
    assert parse_v2(desc["arguments"]) == ITEM_ARGS
    assert parse_v2(again.expand("arguments"))[4] == "0"  # $(ProcId) of the first job
    assert desc["initialdir"] == str(home.resolve() / "gpuaf-jobs" / "train-1")
    assert desc["transfer_input_files"] == "manifest.json,notebook.ipynb,gpuaf-secrets.json"
    assert desc["transfer_output_files"] == "item-$(ProcId)"
    assert desc["output"] == "item-$(ProcId).out" and desc["log"] == "job.log"
    assert desc["request_gpus"] == "1" and "1g.18gb" in desc["require_gpus"]
    assert desc["request_memory"] == "16384" and desc["allowed_execute_duration"] == "14400"
    assert desc["accounting_group"] == "group_higgs" and desc["accounting_group_user"] == "alice"
    assert desc["MY.GpuafJob"] == '"train-1"' and desc["batch_name"] == "gpuaf-nb-train-1"
    env = env_of(desc)
    assert env["GPUAF_NOTEBOOK_JOB"] == "train-1"
    assert env["GPUAF_SECRETS_FILE"] == "gpuaf-secrets.json"
    assert env["GPUAF_JOB_ID"] == "$(ClusterId).$(ProcId)"
    assert "a b" not in str(sub)  # parameters travel in the manifest, never the description


def test_a_single_item_and_no_image(settings, home):
    settings = settings.with_overrides(sessions={"image": None})
    sub, n = htcondor.description(plan(settings, home, slice_name="cpu"), settings)
    desc, again = read_back(sub)
    assert n == 1 and again.getQArgs() == "1"
    assert desc["universe"] == "vanilla" and "container_image" not in desc
    assert "request_gpus" not in desc


def test_arc_ce_description(settings, home):
    p = plan(settings, home, target="grid:nordic", sweeps=["lr=0.1,0.2"])
    sub, n = htcondor.description(p, settings)
    desc, again = read_back(sub)
    assert n == 2 and again.getQArgs() == "2"
    assert desc["universe"] == "grid"
    assert desc["grid_resource"] == "arc https://arc.example.org/arex/rest/1.0"
    assert desc["scitokens_file"] == "/etc/gpuaf/grid-token"
    assert desc["arc_resources"] == "<QueueName>gpu</QueueName>"
    assert desc["arc_rte"] == "ENV/PROXY"
    assert desc["transfer_input_files"] == "manifest.json,notebook.ipynb"  # no secrets
    assert desc["transfer_output_files"] == "item-$(ProcId)"
    assert parse_v2(desc["arguments"]) == ITEM_ARGS
    assert desc["request_cpus"] == "1" and desc["request_gpus"] == "1"
    assert "GPUAF_SECRETS_FILE" not in env_of(desc) and "accounting_group" not in desc
    assert not any(k.startswith("MY.x") or k == "MY.remote_queue" for k in desc)


@pytest.mark.parametrize(
    ("site", "resource", "queue"),
    [
        ("osg-ce", "condor ce.example.org ce.example.org:9619", '"gpu"'),
        ("ce-default-port", "condor ce2.example.org ce2.example.org:9619", None),
    ],
)
def test_htcondor_ce_description(settings, home, site, resource, queue):
    p = plan(settings, home, target=f"grid:{site}", walltime="90m")
    desc, _ = read_back(htcondor.description(p, settings)[0])
    assert desc["universe"] == "grid" and desc["grid_resource"] == resource
    assert desc.get("MY.remote_queue") == queue
    assert (desc["MY.xcount"], desc["MY.maxMemory"], desc["MY.maxWallTime"]) == (
        "1", "16384", "90",
    )  # fmt: skip
    assert "arc_rte" not in desc and "scitokens_file" not in desc


def test_slurm_cannot_reach_the_grid(settings, home):
    with pytest.raises(NotebookError, match="grid universe; use --backend htcondor"):
        slurm.request(plan(settings, home, target="grid:nordic"), settings)


@pytest.mark.parametrize(
    "value",
    ['"a\\nqueue 5"', '"$(Owner)"', '"\\"; rm -rf ~"', '"it\'s"', '"$ENV(HOME)"', '"$$(Name)"'],
)
def test_injection_in_parameter_values_never_reaches_the_description(settings, home, value):
    for target in ("local", "grid:osg-ce"):
        p = plan(settings, home, params=[f"name={value}"], target=target)
        sub, n = htcondor.description(p, settings)
        _desc, again = read_back(sub)
        assert n == 1 and again.getQArgs() == "1"
        assert p.manifest.items[0]["name"] == json.loads(value)
        assert json.loads(value) not in str(sub)
    argv, script = slurm.request(plan(settings, home, params=[f"name={value}"]), settings)
    assert json.loads(value) not in script and json.loads(value) not in json.dumps(argv)


@pytest.mark.parametrize(
    "param", ["a\nqueue=1", "$(Owner)=1", "x y=1", "name=$(Owner)", "name=a\nqueue"]
)
def test_injection_in_parameter_names_or_bare_values_is_refused(settings, home, param):
    with pytest.raises(NotebookError):
        plan(settings, home, params=[param])


def test_environment_values_are_quoted_and_read_back_equal(settings, home):
    settings = settings.with_overrides(
        sessions={"environment": {"PS1": 'it\'s "$USER" > ', "PATH": "/opt/bin:/usr/bin"}}
    )
    desc, _ = read_back(htcondor.description(plan(settings, home), settings)[0])
    env = env_of(desc)
    assert env["PS1"] == 'it\'s "$USER" > ' and env["PATH"] == "/opt/bin:/usr/bin"
    bad = settings.with_overrides(sessions={"environment": {"X": "$(Owner)"}})
    with pytest.raises(PublicError, match=r"\$\(...\)-style reference"):
        htcondor.description(plan(bad, home), bad)


def test_a_home_path_htcondor_cannot_take_is_refused(settings, tmp_path):
    home = tmp_path / "home with space"
    write_notebook(home / "train.ipynb")
    with pytest.raises(PublicError, match="is not a plain absolute path"):
        htcondor.description(plan(settings, home), settings)


# -- Slurm -----------------------------------------------------------------------------
def test_slurm_request_is_a_job_array_with_the_slice_gres(settings, home):
    p = plan(settings, home, slice_name="gpu-2", sweeps=["lr=[0.1,0.2,0.3]", "epochs=1,2"])
    argv, script = slurm.request(p, settings)
    job_dir = home.resolve() / "gpuaf-jobs" / "train-1"
    assert argv[0] == "/opt/slurm/bin/sbatch"
    assert "--array=0-5" in argv and "--gres=gpu:2" in argv and "--partition=gpu" in argv
    assert f"--chdir={job_dir}" in argv and f"--output={job_dir}/slurm-%A_%a.out" in argv
    assert "--job-name=gpuaf-nb-train-1" in argv
    assert "--comment=gpuaf:profile=gpu-2,portal=gpuaf,user=alice,job=train-1" in argv
    assert script.startswith("#!/bin/sh\n")
    assert f"\nexec gpuaf-job gpuaf-run-notebook {job_dir}/manifest.json\n" in script
    single, _ = slurm.request(plan(settings, home, slice_name="mps-25"), settings)
    assert not any(a.startswith("--array") for a in single) and "--gres=shard:1" in single
    mig, _ = slurm.request(plan(settings, home, walltime="30m"), settings)
    assert "--gres=gpu:1g.18gb:1" in mig and "--time=0-00:30:00" in mig


# -- the command ---------------------------------------------------------------------
def gpuaf(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("backend", ["htcondor", "slurm"])
def test_dry_run_end_to_end(capsys, settings_file, home, backend):
    before = files_under(home.parent.parent)
    code, out, err = gpuaf(
        capsys, "submit", str(home / "train.ipynb"), "--slice", "mig-1g", "--param", "epochs=5",
        "--sweep", "lr=0.1,0.01", "--settings", str(settings_file), "--backend", backend,
        "--user", "alice", "--groups", "higgs", "--home", str(home), "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert files_under(home.parent.parent) == before
    assert "nothing was written and nothing was submitted" in out
    assert '#   item-1: {"epochs": 5, "lr": 0.01}' in out
    if backend == "htcondor":
        text = out[out.index("universe = ") :]
        sub = htcondor2.Submit(text)
        assert sub.getQArgs() == "2" and sub["universe"] == "container"
    else:
        argv = json.loads(re.search(r"^sbatch argv: (.*)$", out, re.M)[1])
        assert "--array=0-1" in argv and "--gres=gpu:1g.18gb:1" in argv
        assert "batch script (sbatch's standard input):\n#!/bin/sh" in out


def test_dry_run_to_the_grid_uses_the_configured_backend(capsys, settings_file, home):
    code, out, err = gpuaf(
        capsys, "submit", "train.ipynb", "--slice", "cpu", "--target", "grid:osg-ce",
        "--settings", str(settings_file), "--home", str(home), "--dry-run",
    )  # fmt: skip
    assert code == 0, err
    assert "grid_resource = condor ce.example.org ce.example.org:9619" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slice", "gpu-2", "--groups", "neutrino"],
         "Unknown slice profile 'gpu-2'. Slices you may book: cpu, mig-1g, mps-25."),
        (["--slice", "cpu", "--param", "name=abc"], "quote"),
        (["--slice", "cpu", "--target", "grid:x"], "Unknown target 'grid:x'"),
        (["--slice", "cpu", "--name", "a;b"], "Job name 'a;b' is not allowed"),
    ],
)  # fmt: skip
def test_dry_run_errors_are_one_sentence(capsys, settings_file, home, args, message):
    before = files_under(home.parent.parent)
    code, out, err = gpuaf(
        capsys, "submit", "train.ipynb", "--settings", str(settings_file), "--home", str(home),
        "--dry-run", *args,
    )  # fmt: skip
    assert code == 1 and out == ""
    assert err.startswith("gpuaf: ") and message in err and "Traceback" not in err
    assert files_under(home.parent.parent) == before


def test_without_dry_run_it_needs_a_token_and_the_portal(capsys, settings_file, home, monkeypatch):
    for var in ("BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home.parent))  # no bt_u<uid> there
    args = ("submit", "train.ipynb", "--slice", "cpu", "--settings", str(settings_file),
            "--home", str(home), "--portal", "http://127.0.0.1:9/services/portal")  # fmt: skip
    before = files_under(home.parent.parent)
    if not os.path.exists(f"/tmp/bt_u{os.getuid()}"):
        code, out, err = gpuaf(capsys, *args)
        assert code == 1 and out == "" and "No bearer token found: set BEARER_TOKEN" in err
    monkeypatch.setenv("BEARER_TOKEN", "eyJ.e30.sig")
    code, out, err = gpuaf(capsys, *args)
    assert code == 1 and out == ""
    assert "The portal (http://127.0.0.1:9/services/portal) could not be reached" in err
    assert files_under(home.parent.parent) == before


def test_a_local_backend_needs_an_explicit_one(capsys, tmp_path, home):
    settings_file = write_settings(tmp_path / "local.yaml", backend="local")
    code, _out, err = gpuaf(
        capsys, "submit", "train.ipynb", "--slice", "cpu", "--settings", str(settings_file),
        "--home", str(home), "--dry-run",
    )  # fmt: skip
    assert code == 1 and "give --backend htcondor or --backend slurm" in err
