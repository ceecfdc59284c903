"""gpuaf-job: secrets from a file into the environment, the file gone, then exec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpuaf.hub.handlers import parse_port_report
from gpuaf.jobwrap import load_secrets


def test_the_job_sees_its_secrets_and_the_file_is_gone(tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"JUPYTERHUB_API_TOKEN": "t0ken"}))
    secrets.chmod(0o600)
    out = tmp_path / "env.json"
    code = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    env = {"PATH": os.environ["PATH"], "GPUAF_SECRETS_FILE": str(secrets)}
    subprocess.run(
        [sys.executable, "-m", "gpuaf.jobwrap", sys.executable, "-c", code, str(out)],
        env=env,
        check=True,
        timeout=30,
    )
    seen = json.loads(out.read_text())
    assert seen["JUPYTERHUB_API_TOKEN"] == "t0ken"
    assert "GPUAF_SECRETS_FILE" not in seen
    assert not secrets.exists()


@pytest.mark.parametrize("content", ['["a"]', '{"bad name": "x"}', '{"A": 1}', "not json"])
def test_a_malformed_secrets_file_is_refused(tmp_path, content):
    path = tmp_path / "s"
    path.write_text(content)
    with pytest.raises(ValueError):
        load_secrets({"GPUAF_SECRETS_FILE": str(path)})


def test_no_secrets_file_means_no_secrets():
    assert load_secrets({"PATH": "/bin"}) == {}


@pytest.mark.parametrize(
    "body",
    [
        {"port": 8888, "exec_prefix": "rm -rf /"},
        {"port": "8888"},
        {"port": 80},
        {"port": 70000},
        {"port": True},
        {"batch_query_cmd": "x"},
        [8888],
        None,
        {},
    ],
)
def test_a_port_report_accepts_nothing_but_a_port(body):
    with pytest.raises(ValueError, match=r"port|body"):
        parse_port_report(body)


def test_a_port_report():
    assert parse_port_report({"port": 40123}) == 40123
