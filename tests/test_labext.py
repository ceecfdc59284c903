"""The session server's gpuaf/* routes (gpuaf.labext) on a real jupyter_server, with a
stand-in portal: a tiny HTTP server in this test that records what it receives and
answers as the contract of POST /api/v1/jobs says the portal does."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import nbformat
import pytest
from support.stack import free_ports

from gpuaf.labext.freeze import freeze_environment

SESSION_TOKEN = "hub-token-of-the-session"  # what the stand-in portal must be shown


class StandInPortal(BaseHTTPRequestHandler):
    """Stands in for the portal API: records requests, answers per the contract."""

    received: list[dict] = []
    keys: dict[str, dict] = {}

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.received.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if self.path.endswith("/api/v1/slices"):
            availability = {"capacity": 4, "free": 2, "busy": 2, "waiting": 1, "note": ""}
            self._answer(200, [{"name": "cpu", "display_name": "CPU only", "kind": "cpu",
                                "availability": availability}])  # fmt: skip
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(
            {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if body["slice"] == "nope":
            return self._answer(422, {"detail": "You may not book the slice nope."})
        key = body["idempotency_key"]
        if key in self.keys:
            return self._answer(200, self.keys[key])
        job = {"id": "j1", "name": "analysis", "state": "queued", "items": 2,
               "url": "/services/portal/jobs/j1"}  # fmt: skip
        self.keys[key] = job
        self._answer(201, job)


NOTEBOOK = nbformat.v4.new_notebook(
    cells=[
        nbformat.v4.new_code_cell(
            'lr = 0.1\nepochs = 10\nlabel = "abc"', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell("print(lr * epochs, label)"),
    ],
    metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Py"}},
)


def start_server(root, portal_url: str):
    token = secrets.token_hex(16)
    [port] = free_ports(1)
    env = {**os.environ, "GPUAF_PORTAL_URL": portal_url, "JUPYTERHUB_API_TOKEN": SESSION_TOKEN,
           "GPUAF_IMAGE": "registry.example/gpuaf/session:1", "HOME": str(root)}  # fmt: skip
    env.pop("GPUAF_IMAGE_DIGEST", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False", "--allow-root",
         "--ServerApp.jpserver_extensions=gpuaf.labext=True"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/api/status").status_code == 200:
                return proc, client
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.3)


@pytest.fixture(scope="module")
def portal():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInPortal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield StandInPortal, f"http://127.0.0.1:{server.server_port}/services/portal"
    server.shutdown()


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("labext")
    outside = base / "outside.ipynb"
    nbformat.write(NOTEBOOK, outside)
    for name in ("home", "home-down"):
        (base / name).mkdir()
        nbformat.write(NOTEBOOK, base / name / "analysis.ipynb")
        (base / name / "linked.ipynb").symlink_to(outside)
    return base


@pytest.fixture(scope="module")
def server(portal, roots):
    proc, client = start_server(roots / "home", portal[1])
    yield client
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server_without_portal(roots):
    [dead] = free_ports(1)  # nothing listens there
    proc, client = start_server(roots / "home-down", f"http://127.0.0.1:{dead}/services/portal")
    yield client
    proc.terminate()
    proc.wait(timeout=20)


def submission(**changes):
    return {"path": "analysis.ipynb", "slice": "cpu", "parameters": {"lr": "0.01"},
            "sweep": {"epochs": "1, 2"}, "target": "local", "walltime": "1h",
            "name": None, "idempotency_key": str(uuid.uuid4()), **changes}  # fmt: skip


def test_parameters_come_from_the_parameters_cell(server):
    reply = server.get("/gpuaf/parameters", params={"path": "analysis.ipynb"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["parameters"] == {"lr": 0.1, "epochs": 10, "label": "abc"}
    assert body["defaults"]["label"]["text"] == '"abc"'
    assert body["has_cell"] is True
    missing = server.get("/gpuaf/parameters", params={"path": "missing.ipynb"})
    assert missing.status_code == 404 and "missing.ipynb" in missing.json()["detail"]


def test_slices_are_the_portals_fetched_with_the_session_token(server, portal):
    recorder, _url = portal
    reply = server.get("/gpuaf/slices")
    assert reply.status_code == 200
    assert reply.json()[0]["availability"]["free"] == 2
    seen = recorder.received[-1]
    assert seen["path"] == "/services/portal/api/v1/slices"
    assert seen["headers"]["Authorization"] == f"token {SESSION_TOKEN}"


def test_submit_sends_the_contract_body_and_returns_the_portals_answer(server, portal):
    recorder, _url = portal
    sent = submission()
    reply = server.post("/gpuaf/submit", json=sent)
    assert reply.status_code == 201, reply.text
    assert reply.json() == {"id": "j1", "name": "analysis", "state": "queued", "items": 2,
                            "url": "/services/portal/jobs/j1"}  # fmt: skip
    seen = recorder.received[-1]
    assert (seen["method"], seen["path"]) == ("POST", "/services/portal/api/v1/jobs")
    assert seen["headers"]["Authorization"] == f"token {SESSION_TOKEN}"
    body = seen["body"]
    assert set(body) == {"notebook", "path", "slice", "parameters", "sweep", "target",
                         "walltime", "name", "environment", "idempotency_key"}  # fmt: skip
    assert nbformat.from_dict(body["notebook"]).cells[0].source == NOTEBOOK.cells[0].source
    nbformat.validate(nbformat.from_dict(body["notebook"]))
    assert body["path"] == "analysis.ipynb"  # relative to the home
    assert body["slice"] == "cpu" and body["target"] == "local"
    # checked, then sent as the portal's jobs route takes them: JSON text
    assert body["parameters"] == {"lr": "0.01"}
    assert body["sweep"] == {"epochs": "[1, 2]"}
    assert (body["walltime"], body["name"]) == ("1h", None)
    assert body["idempotency_key"] == sent["idempotency_key"]
    env = body["environment"]
    assert "tornado==" in env["pip_freeze"] and "jupyter_server==" in env["pip_freeze"]
    assert env["image"] == "registry.example/gpuaf/session:1"
    assert env["image_digest"] is None

    again = server.post("/gpuaf/submit", json=sent)  # a retried click: the same key
    assert again.status_code == 200 and again.json()["id"] == "j1"
    assert recorder.received[-1]["body"]["idempotency_key"] == sent["idempotency_key"]


def test_the_portals_refusal_is_returned_unchanged(server):
    reply = server.post("/gpuaf/submit", json=submission(slice="nope"))
    assert reply.status_code == 422
    assert reply.json() == {"detail": "You may not book the slice nope."}


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"path": "../outside.ipynb"}, 403, "outside your home"),
        ({"path": "linked.ipynb"}, 403, "outside your home"),  # a link pointing out
        ({"path": "/etc/passwd"}, 403, "outside your home"),
        ({"parameters": {"1lr": "0.1"}}, 400, "not allowed"),
        ({"parameters": {"lr": "abc"}}, 400, "not JSON"),
        ({"parameters": {"lr": 0.1}}, 400, "JSON text"),
        ({"parameters": {"unknown": "1"}}, 400, "does not set unknown"),
        ({"sweep": {"epochs": "1,,2"}}, 400, "not JSON"),
        ({"sweep": {"lr": "1,2"}}, 400, "more than once"),
        ({"slice": ""}, 400, "Choose a slice"),
        ({"target": "moon"}, 400, "grid:<site>"),
        ({"idempotency_key": "x; rm -rf ~"}, 400, "UUID"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_sent(server, portal, changes, status, words):
    recorder, _url = portal
    before = len(recorder.received)
    reply = server.post("/gpuaf/submit", json=submission(**changes))
    assert reply.status_code == status, reply.text
    assert words in reply.json()["detail"]
    assert len(recorder.received) == before


def test_requests_without_the_servers_token_are_refused(server):
    anonymous = httpx.post(f"{server.base_url}/gpuaf/submit", json=submission())
    assert anonymous.status_code == 403
    assert httpx.get(f"{server.base_url}/gpuaf/slices").status_code == 403


def test_an_unreachable_portal_is_a_502_with_a_clear_message(server_without_portal):
    reply = server_without_portal.post("/gpuaf/submit", json=submission())
    assert reply.status_code == 502
    assert "could not be reached" in reply.json()["detail"]
    assert "Nothing was submitted" in reply.json()["detail"]
    assert server_without_portal.get("/gpuaf/slices").status_code == 502


def test_freeze_reads_a_spack_lock_and_skips_conda_without_conda(tmp_path):
    (tmp_path / "spack.lock").write_text('{"_meta": {"lockfile-version": 5}}')
    env = {"SPACK_ENV": str(tmp_path), "CONDA_PREFIX": str(tmp_path), "PATH": str(tmp_path)}
    frozen = asyncio.run(freeze_environment(env))
    assert frozen["spack"] == '{"_meta": {"lockfile-version": 5}}'
    assert frozen["conda"] is None and frozen["image"] is None
    assert frozen["pip_freeze"].strip()
