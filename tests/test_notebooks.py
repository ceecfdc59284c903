"""Notebook jobs, the offline core: notebooks, paths, parameters, sweeps and the job plan.
Every bad input is refused with a sentence saying what is allowed, and nothing is written."""

from __future__ import annotations

import json
import os

import nbformat
import pytest
import yaml
from support.notebooks import write_notebook, write_settings

from gpuaf.errors import PublicError, UnknownSlice
from gpuaf.notebooks.errors import NotebookError, NotebookTooLarge, PathNotAllowed, SweepTooLarge
from gpuaf.notebooks.manifest import parse_manifest
from gpuaf.notebooks.parameters import (
    declared_parameters,
    parse_param,
    parse_sweep,
    sweep_items,
)
from gpuaf.notebooks.plan import plan_job
from gpuaf.notebooks.validation import inside_home, load_notebook, read_notebook_file
from gpuaf.settings import load_settings

MIB = 1024 * 1024


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home" / "alice"
    write_notebook(home / "work" / "train.ipynb")
    return home


@pytest.fixture
def settings(tmp_path):
    return load_settings(write_settings(tmp_path / "settings.yaml"))


# -- notebooks -------------------------------------------------------------------
def test_a_valid_notebook_loads_with_its_parameters(home):
    path, nb = read_notebook_file("work/train.ipynb", home, max_size=MIB)
    assert path == (home / "work" / "train.ipynb").resolve()
    declared = declared_parameters(nb)
    assert list(declared) == ["lr", "epochs", "name"]
    assert declared["lr"].default_text == "0.1"
    assert declared["epochs"].help == "passes over the data"


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"x" * (MIB + 1), 413, ["is 1.0 MiB", "at most 1.0 MiB"]),
        (b"{not json", 400, ["is not JSON", "line 1, column 2", "(.ipynb)"]),
        (b"\xff\xfe", 400, ["not UTF-8"]),
        (b"[1, 2]", 400, ["not a notebook"]),
        (b'{"nbformat": 3, "worksheets": []}', 400, ["nbformat 3", "only nbformat 4"]),
        (
            json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}).encode(),
            400,
            ["not a valid nbformat 4 notebook", "'cells' is a required property"],
        ),
        (
            json.dumps(
                {
                    "nbformat": 4,
                    "nbformat_minor": 4,
                    "metadata": {},
                    "cells": [
                        {
                            "cell_type": "code",
                            "source": "",
                            "metadata": {},
                            "outputs": [],
                            "execution_count": "one",
                        }
                    ],
                }
            ).encode(),
            400,
            ["not a valid nbformat 4 notebook, at cells[0]: "],
        ),
    ],
)
def test_bad_notebooks_are_refused_with_what_is_wrong(data, status, words):
    with pytest.raises(NotebookError) as err:
        load_notebook(data, max_size=MIB)
    assert err.value.status == status
    assert isinstance(err.value, PublicError)
    for word in words:
        assert word in err.value.message, err.value.message


def test_a_large_file_is_refused_before_it_is_read(home):
    big = home / "big.ipynb"
    big.write_bytes(b" " * (2 * MIB))
    with pytest.raises(NotebookTooLarge, match=r"big.ipynb is 2.0 MiB; notebooks of at most"):
        read_notebook_file(big, home, max_size=MIB)


def test_paths_must_stay_in_the_home(home, tmp_path):
    outside = write_notebook(tmp_path / "elsewhere" / "nb.ipynb")
    (home / "escape.ipynb").symlink_to(outside)
    (home / "link-dir").symlink_to(tmp_path / "elsewhere")
    for path in (outside, "../../elsewhere/nb.ipynb", "escape.ipynb", "link-dir/nb.ipynb"):
        with pytest.raises(PathNotAllowed) as err:
            read_notebook_file(path, home, max_size=MIB)
        assert err.value.status == 403
        assert "outside your home directory" in err.value.message
    inner = home / "work" / "inner.ipynb"
    inner.symlink_to(home / "work" / "train.ipynb")
    assert inside_home("work/inner.ipynb", home) == (home / "work" / "train.ipynb").resolve()
    with pytest.raises(NotebookError, match="is not a file"):
        read_notebook_file("work", home, max_size=MIB)
    with pytest.raises(NotebookError, match=r"Cannot read the notebook missing\.ipynb"):
        read_notebook_file("missing.ipynb", home, max_size=MIB)


# -- parameters and sweeps ----------------------------------------------------------
def test_parameters_are_names_with_json_values():
    assert parse_param("lr=0.1") == ("lr", 0.1)
    assert parse_param('name="abc"') == ("name", "abc")
    assert parse_param("sizes=[1, 2, 3]") == ("sizes", [1, 2, 3])
    assert parse_param('cfg={"a": [1, "x,y"]}') == ("cfg", {"a": [1, "x,y"]})
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("none=null") == ("none", None)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name=abc", ["value of name is not JSON: abc", "name='\"abc\"'", "lr=0.1"]),
        ("lr", ["not of the form name=value"]),
        ("1lr=0.1", ["'1lr' is not allowed", "Python identifiers"]),
        ("class=1", ["'class' is not allowed", "not keywords"]),
        ("a-b=1", ["'a-b' is not allowed"]),
        ("x=NaN", ["not JSON"]),
        ("x=1,2", ["has 2 values", "--sweep"]),
        ("x=$(whoami)", ["not JSON"]),
        ('x="a"\n"b"', ["not JSON"]),
    ],
)
def test_bad_parameters_are_refused(text, words):
    with pytest.raises(NotebookError) as err:
        parse_param(text)
    assert err.value.status == 400
    for word in words:
        assert word in err.value.message, err.value.message


def test_sweeps_split_at_top_level_commas_or_take_a_json_list():
    assert parse_sweep("lr=0.1,0.01, 0.001") == ("lr", [0.1, 0.01, 0.001])
    assert parse_sweep("lr=[0.1,0.01]") == ("lr", [0.1, 0.01])
    assert parse_sweep('opt="adam","sgd, momentum"') == ("opt", ["adam", "sgd, momentum"])
    assert parse_sweep("shape=[1,2],[3,4]") == ("shape", [[1, 2], [3, 4]])
    assert parse_sweep("shape=[[1,2]]") == ("shape", [[1, 2]])
    assert parse_sweep('cfg={"a":1,"b":2},{"a":3}') == ("cfg", [{"a": 1, "b": 2}, {"a": 3}])
    assert parse_sweep("seed=7") == ("seed", [7])
    for bad, message in [
        ("lr=[]", "has no values"),
        ("lr=0.1,,0.2", "not JSON"),
        ("lr=0.1,", "not JSON: (nothing)"),
        ("lr=0.1 0.2", "unexpected '0.2'"),
        ("opt=adam,sgd", "not JSON: adam"),
    ]:
        with pytest.raises(NotebookError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_sweep(bad)


def test_sweeps_make_a_grid_with_the_fixed_parameters():
    items = sweep_items([("epochs", 5)], [("lr", [0.1, 0.01]), ("name", ["a", "b", "c"])], limit=6)
    assert len(items) == 6
    assert items[0] == {"epochs": 5, "lr": 0.1, "name": "a"}
    assert items[-1] == {"epochs": 5, "lr": 0.01, "name": "c"}
    assert sweep_items([], [], limit=1) == [{}]
    with pytest.raises(SweepTooLarge) as err:
        sweep_items([], [("lr", list(range(10))), ("seed", list(range(11)))], limit=100)
    assert err.value.status == 413
    assert "110 items (10 (lr) x 11 (seed)); at most 100 items" in err.value.message
    with pytest.raises(NotebookError, match="lr is given more than once"):
        sweep_items([("lr", 1)], [("lr", [1, 2])], limit=10)
    with pytest.raises(NotebookError, match="Parameter lr is given twice"):
        sweep_items([("lr", 1), ("lr", 2)], [], limit=10)


# -- the plan: everything checked, nothing written ---------------------------------
def plan(settings, home, **kw):
    args = {"notebook": "work/train.ipynb", "home": home, "user": "alice",
            "groups": ["higgs"], "slice_name": "mig-1g"} | kw  # fmt: skip
    return plan_job(settings, **args)


def test_a_plan_checks_everything_and_writes_nothing(settings, home):
    before = files_under(home)
    p = plan(settings, home, params=["epochs=5"], sweeps=["lr=[0.1,0.2]"], walltime="2h")
    assert files_under(home) == before
    assert p.count == 2 and p.profile.walltime == 7200
    assert p.job_dir.parent == home.resolve() / "gpuaf-jobs"
    assert p.manifest.job_id.startswith("train-") and p.accounting_group == "higgs"
    data = parse_manifest(p.manifest.to_json())
    assert data.items == ({"epochs": 5, "lr": 0.1}, {"epochs": 5, "lr": 0.2})
    assert data.kernel == "python3" and data.output_dir == str(p.job_dir)


@pytest.mark.parametrize(
    ("kw", "error", "words"),
    [
        ({"slice_name": "gpu-2", "groups": ["neutrino"]}, UnknownSlice,
         ["Unknown slice profile 'gpu-2'", "Slices you may book: cpu, mig-1g, mps-25."]),
        ({"params": ["lrr=0.1"]}, NotebookError,
         ["does not set lrr", "its parameters: lr, epochs, name"]),
        ({"params": ["name=abc"]}, NotebookError, ["not JSON", "double quotes"]),
        ({"sweeps": ["lr=" + ",".join(["0.1"] * 101)]}, SweepTooLarge, ["at most 100 items"]),
        ({"target": "grid:nowhere"}, NotebookError,
         ["Unknown target 'grid:nowhere'", "local, grid:ce-default-port, grid:nordic"]),
        ({"walltime": "5h"}, NotebookError, ["not allowed on slice mig-1g", "1m to 4 h"]),
        ({"walltime": "soon"}, NotebookError, ["not a duration"]),
        ({"name": "x\ny"}, NotebookError, ["Job name 'x\\ny' is not allowed"]),
        ({"name": "$(Owner)"}, NotebookError, ["Job name '$(Owner)' is not allowed"]),
        ({"notebook": "/etc/passwd"}, PathNotAllowed, ["outside your home directory"]),
    ],
)  # fmt: skip
def test_a_plan_refuses_bad_input_and_writes_nothing(settings, home, kw, error, words):
    before = files_under(home)
    with pytest.raises(error) as err:
        plan(settings, home, **kw)
    for word in words:
        assert word in err.value.message, err.value.message
    assert files_under(home) == before


def test_parameters_need_a_parameters_cell(settings, home):
    write_notebook(home / "plain.ipynb", parameters=None, body="print(1)")
    assert plan(settings, home, notebook="plain.ipynb").count == 1
    with pytest.raises(NotebookError, match="no cell tagged 'parameters'"):
        plan(settings, home, notebook="plain.ipynb", params=["lr=1"])


def test_a_non_python_parameters_cell_is_read_as_assignments(home):
    path = write_notebook(home / "r.ipynb", parameters="alpha = 1\nbeta: int = 2\n")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": "mystery", "language": "mystery"}
    assert list(declared_parameters(nb)) == ["alpha", "beta"]


def test_settings_refuse_bad_grid_sites(tmp_path):
    from gpuaf.errors import SettingsError

    for site, message in [
        ({"kind": "arc", "endpoint": "arc.example.org"}, "needs token_file or x509_proxy"),
        ({"kind": "htcondor-ce", "endpoint": "ce.example.org\nqueue"}, "endpoint"),
        ({"kind": "htcondor-ce", "endpoint": "ce:99999"}, "port must be 1 to 65535"),
        ({"kind": "htcondor-ce", "endpoint": "ce", "arc_rte": ["X"]}, "belongs to kind arc"),
        ({"kind": "gt5", "endpoint": "ce"}, "kind"),
    ]:
        path = tmp_path / "s.yaml"
        write_settings(path)
        data = yaml.safe_load(path.read_text())
        data["notebooks"]["grid_sites"] = {"site": site}
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(SettingsError, match=message):
            load_settings(path)
    data["notebooks"] = {"grid_sites": {"Bad Name": {"kind": "htcondor-ce", "endpoint": "c"}}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SettingsError, match="Bad Name"):
        load_settings(path)
    data["notebooks"] = {"output_dir": "../elsewhere"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SettingsError, match="output_dir"):
        load_settings(path)
    assert os.path.exists(path)
