"""Reading a session's activity from a real Jupyter server, as the session agent does."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time

import httpx
import pytest
from support.stack import free_ports

from gpuaf.session_activity import server_activity, server_port


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    token = secrets.token_hex(16)
    [port] = free_ports(1)
    root = tmp_path_factory.mktemp("jupyter")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"token {token}"}
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/api/status").status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.3)
    yield proc, port, token, client
    for kernel in client.get("/api/kernels").json():
        client.delete(f"/api/kernels/{kernel['id']}")
    proc.terminate()
    proc.wait(timeout=20)


def test_kernels_and_terminals_are_read_without_counting_as_activity(jupyter):
    proc, port, token, client = jupyter
    assert server_port(proc.pid) == port
    environ = {"JUPYTERHUB_SERVICE_PREFIX": "/", "JUPYTERHUB_API_TOKEN": token}
    before = client.get("/api/status").json()["last_activity"]
    quiet = server_activity(environ, port)
    assert quiet == {"kernels": 0, "busy_kernels": 0, "terminals": 0, "last_activity": None}
    for _ in range(3):
        server_activity(environ, port)
    assert client.get("/api/status").json()["last_activity"] == before  # the reads left no mark

    kernel = client.post("/api/kernels", json={"name": "python3"}).json()
    client.post("/api/terminals")
    deadline = time.monotonic() + 30
    seen = server_activity(environ, port)
    while seen["busy_kernels"] and time.monotonic() < deadline:  # a kernel is busy at start
        time.sleep(0.5)
        seen = server_activity(environ, port)
    assert (seen["kernels"], seen["terminals"]) == (1, 1)
    assert seen["last_activity"] is not None
    assert seen["last_activity"][:19] >= kernel["last_activity"][:19]


def test_a_server_that_cannot_be_read_gives_no_verdict(jupyter):
    _proc, port, _token, _client = jupyter
    assert server_activity({"JUPYTERHUB_API_TOKEN": "wrong"}, port) is None  # 403
    assert server_activity({}, None) is None
    assert server_port(999_999_999) is None
