"""The `gpuaf` command as an admin meets it: clear sentences, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import yaml
from support.stack import write_settings


def gpuaf(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpuaf", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "settings.yaml"
    write_settings(path, ledger_url=None, simulate=None)
    return path


@pytest.mark.parametrize("command", ["hub", "demo"])
def test_a_busy_port_is_a_sentence_not_a_traceback(settings_file, command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gpuaf(command, "--settings", str(settings_file), "--port", str(port))
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 (the public proxy) is already in use" in result.stderr
    assert "portal.port" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_settings_file_is_refused_at_start(tmp_path, settings_file):
    data = yaml.safe_load(settings_file.read_text())
    data["profiles"][0]["groups"] = ["atlas"]
    data["sessions"]["start_timeout"] = "soon"
    data["ledger"]["uri"] = "sqlite://"
    settings_file.write_text(yaml.safe_dump(data))
    result = gpuaf("hub", "--settings", str(settings_file))
    assert result.returncode == 2
    assert str(settings_file) in result.stderr
    assert "sessions.start_timeout: 'soon' is not a duration" in result.stderr
    assert "ledger.uri: unknown key; allowed keys here: url" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_identity_provider_is_named(settings_file):
    result = gpuaf("hub", "--settings", str(settings_file))
    assert result.returncode == 2
    assert "iam.issuer: cannot read the discovery document" in result.stderr


def test_slices_lists_the_catalogue_with_what_this_machine_can_serve(settings_file):
    result = gpuaf("slices", "--settings", str(settings_file), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["cpu"]["availability"]["capacity"] == 8
    assert rows["gpu-1"]["availability"]["capacity"] == 0  # no GPU on this machine
    assert rows["mps-25"]["mps_thread_percentage"] == 25  # every field of the profile
    assert rows["mps-25"]["groups"] == ["neutrino"]
    sim = gpuaf("slices", "--settings", str(settings_file), "--simulate-gpus")
    assert "GPUs are SIMULATED" in sim.stdout
    assert "2/2" in sim.stdout  # two simulated H100s for gpu-1


def test_migrate_brings_the_ledger_up(settings_file, tmp_path):
    result = gpuaf("migrate", "--settings", str(settings_file))
    assert result.returncode == 0, result.stderr
    assert "ledger is up to date" in result.stdout
    assert (tmp_path / "data" / "gpuaf.sqlite").exists()


def test_api_outside_the_hub_says_how_to_start_the_portal(settings_file):
    result = gpuaf("api", "--settings", str(settings_file))
    assert result.returncode == 1
    assert "runs as a service of the hub" in result.stderr


def test_slices_render_prints_what_a_session_would_submit(settings_file):
    condor = gpuaf(
        "slices", "render", "mig-1g.18gb", "--backend", "htcondor", "--settings", str(settings_file)
    )
    assert condor.returncode == 0, condor.stderr
    assert 'require_gpus = (DeviceName == "NVIDIA H200 MIG 1g.18gb")' in condor.stdout
    assert "request_gpus = 1" in condor.stdout
    assert "getenv = false" in condor.stdout
    assert "JUPYTERHUB_API_TOKEN" not in condor.stdout
    slurm = gpuaf(
        "slices", "render", "mps-25", "--backend", "slurm", "--settings", str(settings_file)
    )
    assert slurm.returncode == 0, slurm.stderr
    assert '"--gres=shard:1"' in slurm.stdout
    assert "export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=25" in slurm.stdout
    unknown = gpuaf(
        "slices", "render", "h100-for-free", "--backend", "slurm", "--settings", str(settings_file)
    )
    assert unknown.returncode == 1
    assert "Unknown slice profile 'h100-for-free'. Profiles: cpu, mig-1g.18gb" in unknown.stderr


def test_node_inspect_without_a_gpu_says_so():
    result = gpuaf("node", "inspect")
    assert result.returncode == 0, result.stderr
    assert "No NVIDIA GPU found on this node" in result.stdout
    assert gpuaf("node", "reboot").returncode == 1
