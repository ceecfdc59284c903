"""The settings file: what is accepted, and how a mistake is reported."""

from __future__ import annotations

import pytest
import yaml

from gpuaf.errors import SettingsError
from gpuaf.settings import EXAMPLE, load_settings


def _write(tmp_path, data):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def example():
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_documented_example_is_valid_and_is_the_default():
    settings = load_settings()
    assert settings.backend.kind == "local"
    assert settings.ledger_url.startswith("sqlite:///")
    assert [p.name for p in settings.profiles_for(["neutrino"])] == [
        "cpu",
        "mig-1g.18gb",
        "mps-25",
        "gpu-1",
    ]
    assert settings.profile("mps-25").mps_pinned_memory == 20 * 1024


def test_data_dir_is_relative_to_the_settings_file(tmp_path, example):
    settings = load_settings(_write(tmp_path, example))
    assert settings.data_dir == tmp_path / "gpuaf-data"


def test_an_unknown_key_names_the_file_the_key_and_the_allowed_keys(tmp_path, example):
    example["portal"]["prot"] = 8000
    path = _write(tmp_path, example)
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    text = str(err.value)
    assert str(path) in text
    assert "portal.prot: unknown key" in text
    assert "allowed keys here: host, port, public_url" in text


def test_an_unknown_key_inside_a_profile_lists_the_profile_keys(tmp_path, example):
    example["profiles"][1]["gpu"] = 1
    with pytest.raises(
        SettingsError,
        match=r"profiles\[1\]\.gpu: unknown key; allowed keys "
        r"here: name, display_name",
    ):
        load_settings(_write(tmp_path, example))


def test_a_wrong_type_says_what_was_given(tmp_path, example):
    example["portal"]["port"] = "eighty"
    with pytest.raises(
        SettingsError,
        match=r"portal\.port: Input should be a valid integer.*"
        r"\(got 'eighty'\)",
    ):
        load_settings(_write(tmp_path, example))


def test_a_profile_naming_an_unknown_group_lists_the_declared_ones(tmp_path, example):
    example["profiles"][0]["groups"] = ["higgs", "atlas"]
    with pytest.raises(
        SettingsError,
        match=r"profiles\[0\]\.groups: unknown group 'atlas'; "
        r"declared groups: facility-admins, higgs, higgs-admins, neutrino",
    ):
        load_settings(_write(tmp_path, example))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"kind": "mig", "mig_profile": "9g.1tb"},
            "exists on no known GPU; known profiles: 1g.10gb",
        ),
        (
            {"kind": "mig", "mig_profile": "1g.5gb", "gpu_models": ["H200"]},
            "not offered by ['H200']; it is offered by A100-40GB",
        ),
        ({"kind": "mps", "mps_thread_percentage": 0}, "must be 1-100"),
        ({"kind": "mps", "mps_thread_percentage": 101}, "must be 1-100"),
        (
            {
                "kind": "mps",
                "mps_thread_percentage": 50,
                "mps_pinned_memory": "90G",
                "gpu_models": ["H100"],
            },
            "more than the GPU has",
        ),
        ({"kind": "gpu", "gpus": 0}, "at least 1"),
        ({"kind": "gpu", "gpus": -1}, "greater than or equal to 0"),
        ({"kind": "cpu", "mig_profile": "1g.5gb"}, "belongs to kind mig"),
        ({"kind": "gpu", "gpus": 1, "gpu_models": ["V100"]}, "match no known GPU model"),
        ({"kind": "fpga"}, "Input should be 'cpu', 'gpu', 'mig' or 'mps'"),
        ({"kind": "cpu", "memory": "lots"}, "not a memory size"),
        ({"kind": "cpu", "walltime": "forever"}, "not a duration"),
        ({"kind": "cpu", "name": "Bad Name"}, "should match pattern"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(tmp_path, example, change, message):
    profile = {"name": "x", "display_name": "X", **change}
    example["profiles"].append(profile)
    with pytest.raises(SettingsError) as err:
        load_settings(_write(tmp_path, example))
    assert f"profiles[{len(example['profiles']) - 1}]" in str(err.value)
    assert message in str(err.value)


def test_duplicate_profile_names_are_refused(tmp_path, example):
    example["profiles"].append(dict(example["profiles"][0]))
    with pytest.raises(SettingsError, match="'cpu' is used twice"):
        load_settings(_write(tmp_path, example))


def test_not_yaml_and_not_a_mapping_are_refused(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("portal: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SettingsError, match="must be a mapping"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_simulation_spec_is_checked_at_load(tmp_path, example):
    example["backend"]["local"]["simulate_gpus"] = "3xB200"
    with pytest.raises(SettingsError, match="unknown GPU model 'B200'"):
        load_settings(_write(tmp_path, example))


def test_the_client_secret_may_come_from_a_file(tmp_path, example):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    del example["iam"]["client_secret"]
    example["iam"]["client_secret_file"] = str(secret)
    settings = load_settings(_write(tmp_path, example))
    assert settings.iam.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    example["iam"]["client_secret"] = "other"
    with pytest.raises(SettingsError, match="set client_secret or client_secret_file, not both"):
        load_settings(_write(tmp_path, example))
    del example["iam"]["client_secret"]
    example["iam"]["client_secret_file"] = str(tmp_path / "missing")
    with pytest.raises(SettingsError, match="client_secret_file: cannot read"):
        load_settings(_write(tmp_path, example))


def test_the_settings_reference_in_the_docs_is_current():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location(
        "gen_ref", ROOT / "docs" / "generate_settings_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs/admin/settings.md").read_text(encoding="utf-8") == module.render()


def test_without_profiles_the_default_catalogue_is_used(tmp_path, example):
    del example["profiles"]
    settings = load_settings(_write(tmp_path, example))
    names = [p.name for p in settings.profiles]
    assert names[0] == "cpu"
    for expected in (
        "a100-40gb-mig-1g.5gb",
        "a100-80gb-mig-3g.40gb",
        "h100-80gb-mig-1g.10gb",
        "h200-141gb-mig-1g.18gb",
        "h200-141gb-mig-3g.71gb",
        "mps-25",
        "mps-50",
        "gpu-1",
        "gpu-2",
        "gpu-4",
    ):
        assert expected in names
    kinds = {p.kind for p in settings.profiles}
    assert kinds == {"cpu", "gpu", "mig", "mps"}
    h200 = settings.profile("h200-141gb-mig-1g.18gb")
    assert h200.models()[0].mig["1g.18gb"].memory_mib == 16384
