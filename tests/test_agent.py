"""The session agent: NVML sampling (FakeNVML), its reports, and the API that stores them."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import httpx
import pytest
from alembic import command
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select
from support.fake_nvml import FakeGpu, FakeNVML

from gpuaf import agent, jobwrap
from gpuaf.api.deps import get_current_user
from gpuaf.api.identity import PortalUser
from gpuaf.api.routes import samples as samples_route
from gpuaf.api.routes import sessions as sessions_route
from gpuaf.errors import PublicError
from gpuaf.ledger import Ledger, migrate
from gpuaf.ledger.db import alembic_config
from gpuaf.ledger.models import GpuSample
from gpuaf.ledger.sessions import open_session, set_state
from gpuaf.settings import SessionSettings

H200 = "NVIDIA H200"


def whole_gpu() -> FakeNVML:
    gpu = FakeGpu(H200, 143771, used_mib=2048, utilisation_pct=37, power_mw=250_000,
                  energy_mj=9_000_000, uuid="GPU-aaaa")  # fmt: skip
    return FakeNVML([gpu])


def mig_gpu() -> FakeNVML:
    gpu = FakeGpu(H200, 143771, migs=[("1g.18gb", 16384), ("3g.71gb", 71168)], used_mib=1000,
                  power_mw=400_000, energy_mj=5_000_000, uuid="GPU-bbbb")  # fmt: skip
    return FakeNVML([gpu])


# --- sampling -------------------------------------------------------------------------------


def test_a_whole_gpu_gives_every_reading():
    [s] = agent.sample(whole_gpu(), ["0"])
    assert (s.device, s.memory_used_mib, s.memory_total_mib) == ("0", 2048, 143771)
    assert (s.utilisation_pct, s.power_w, s.energy_j, s.mig) == (37.0, 250.0, 9000.0, False)
    assert agent.describe([s]) is None


def test_a_mig_instance_has_no_utilisation_and_the_parent_gpus_energy():
    nvml = mig_gpu()
    [s] = agent.sample(nvml, ["MIG-bbbb-1"])
    assert (s.memory_used_mib, s.memory_total_mib, s.mig) == (1000, 71168, True)
    assert s.utilisation_pct is None and s.power_w is None
    assert s.energy_j == 5000.0  # the whole GPU's counter
    note = agent.describe([s])
    assert "utilisation is not available on MIG instances" in note
    assert "energy of MIG-bbbb-1 is the whole parent GPU's" in note
    payload = agent.build_payload(note, [s])
    assert payload["note"] == note
    assert payload["samples"] == [
        {"device": "MIG-bbbb-1", "at": s.at.isoformat(), "memory_used_mib": 1000,
         "memory_total_mib": 71168, "utilisation_pct": None, "power_w": None, "energy_j": 5000.0}
    ]  # fmt: skip


def test_visible_devices():
    assert agent.visible_devices({"CUDA_VISIBLE_DEVICES": "0, MIG-x-1"}) == ["0", "MIG-x-1"]
    assert agent.visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert agent.visible_devices({}) == []


def _environ(**extra: str) -> dict[str, str]:
    return {
        "GPUAF_PORTAL_URL": "http://portal.invalid/services/portal/",
        "GPUAF_SESSION_ID": "s-1",
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "CUDA_VISIBLE_DEVICES": "0",
        "GPUAF_AGENT_INTERVAL": "0.01",
        **extra,
    }


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The agent's POSTs, caught instead of sent."""
    sent: list[dict] = []

    def fake_post(environ, payload, timeout=20):
        sent.append({"url": agent.samples_url(environ), **payload})
        return 204

    monkeypatch.setattr(agent, "post", fake_post)
    return sent


@pytest.mark.parametrize(
    ("nvml", "extra", "why"),
    [
        (FakeNVML([], driver_loaded=False), {}, "No GPU driver found"),
        (FakeNVML([]), {}, "NVML sees no GPU"),
        (whole_gpu(), {"CUDA_VISIBLE_DEVICES": ""}, "No GPU assigned"),
        (whole_gpu(), {"GPUAF_SIMULATED_GPUS": "1"}, "Simulated GPUs"),
    ],
)
def test_without_a_gpu_the_agent_says_so_once_and_stays_quiet(posts, monkeypatch, nvml, extra, why):
    parents = iter([1] * 20)  # twenty rounds, then the session's server is gone
    monkeypatch.setattr(agent.os, "getppid", lambda: next(parents, 2))
    monkeypatch.setattr(agent, "server_activity", lambda environ, port: None)
    assert agent.run(_environ(**extra), 1, nvml) == 0
    [report] = posts
    assert report["samples"] == [] and why in report["note"]
    assert report["url"] == "http://portal.invalid/services/portal/api/v1/sessions/s-1/samples"


def test_activity_is_reported_when_it_changes_and_only_then(posts, monkeypatch):
    parents = iter([1] * 30)
    monkeypatch.setattr(agent.os, "getppid", lambda: next(parents, 2))
    seen = iter([None, *[{"kernels": 0}] * 5, *[{"kernels": 1}] * 5])
    monkeypatch.setattr(agent, "server_activity", lambda environ, port: next(seen, {"kernels": 1}))
    environ = _environ(GPUAF_SIMULATED_GPUS="1")
    assert agent.run(environ, 1) == 0
    assert [p.get("activity") for p in posts] == [None, {"kernels": 0}, {"kernels": 1}]
    assert "Simulated GPUs" in posts[0]["note"] and posts[1]["note"] is None


def test_the_agent_reports_until_its_parent_is_gone(posts, monkeypatch):
    parents = iter([1, 1, 1, 1, 2])  # the parent changes: the session is over
    monkeypatch.setattr(agent.os, "getppid", lambda: next(parents, 2))
    nvml = mig_gpu()
    monkeypatch.setattr(agent, "server_activity", lambda environ, port: None)
    assert agent.run(_environ(CUDA_VISIBLE_DEVICES="MIG-bbbb-0"), 1, nvml) == 0
    assert len(posts) >= 2 and all(len(p["samples"]) == 1 for p in posts)
    assert "MIG" in posts[0]["note"] and all(p["note"] is None for p in posts[1:])
    assert nvml.initialised == 0  # shut down again


def test_gpuaf_job_starts_the_agent_only_with_a_portal_url(monkeypatch, tmp_path):
    started: list[list[str]] = []
    monkeypatch.setattr(jobwrap.subprocess, "Popen", lambda argv, **kw: started.append(argv))
    monkeypatch.setattr(jobwrap.os, "execve", lambda *a: None)
    env = {"GPUAF_SESSION_ID": "s-1", "JUPYTERHUB_API_TOKEN": "t"}
    for extra, expected in (({}, []), ({"GPUAF_PORTAL_URL": "http://p/"}, ["gpuaf.agent"])):
        started.clear()
        monkeypatch.setattr(jobwrap.os, "environ", {**env, **extra})
        jobwrap.main(["true"])
        assert [argv[-1] for argv in started] == expected


@pytest.mark.gpu
def test_sampling_a_real_gpu():
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVML: {exc}")
    try:
        if not pynvml.nvmlDeviceGetCount():
            pytest.skip("NVML sees no GPU")
        [s] = agent.sample(pynvml, ["0"])
    finally:
        pynvml.nvmlShutdown()
    assert s.memory_total_mib > 0 and 0 <= s.memory_used_mib <= s.memory_total_mib
    assert s.utilisation_pct is None or 0 <= s.utilisation_pct <= 100


# --- the API that stores the reports ---------------------------------------------------------


def signed_in_as(name: str):
    """Test double of ``get_current_user``: the caller is ``name``, as a hub token resolves."""

    def current_user() -> PortalUser:
        return PortalUser(name, ("higgs",), False, "token")

    return current_user


@pytest.fixture
def api(tmp_path):
    """The samples and sessions routes on a migrated SQLite ledger, without a hub."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate(url)
    ledger = Ledger(url)
    app = FastAPI()
    settings = SimpleNamespace(sessions=SessionSettings())
    app.state.facility = SimpleNamespace(ledger=ledger, settings=settings)
    hub_calls: list[dict] = []

    def hub(request: httpx.Request) -> httpx.Response:  # the hub's activity API, recorded
        hub_calls.append({"path": request.url.path, **json.loads(request.content)})
        return httpx.Response(204)

    app.state.identity = SimpleNamespace(
        hub_auth=SimpleNamespace(api_url="http://hub.invalid/hub/api", api_token="svc"),
        http=httpx.AsyncClient(transport=httpx.MockTransport(hub)),
    )
    app.include_router(samples_route.router, prefix="/api/v1")
    app.include_router(sessions_route.router, prefix="/api/v1")

    @app.exception_handler(PublicError)  # as api/app.py answers PublicError
    async def public_error(_request: Request, exc: PublicError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    sid = open_session(ledger, user="alice", server="", profile="mig", backend="local",
                       gpu_share=0.5)  # fmt: skip
    set_state(ledger, sid, "running", "up")
    yield SimpleNamespace(
        app=app, ledger=ledger, sid=sid, client=TestClient(app), hub_calls=hub_calls
    )
    ledger.dispose()


def _sample(at: dt.datetime, used: int, energy: float | None, power: float | None = None) -> dict:
    return {"at": at.isoformat(), "device": "MIG-bbbb-0", "memory_used_mib": used,
            "memory_total_mib": 16384, "utilisation_pct": None, "power_w": power,
            "energy_j": energy}  # fmt: skip


def test_the_owner_reports_samples_and_sees_them_summed_up(api):
    api.app.dependency_overrides[get_current_user] = signed_in_as("alice")
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    body = {"note": "no utilisation on MIG",
            "samples": [_sample(t0, 1000, 7200.0), _sample(t0 + dt.timedelta(minutes=1), 3000,
                                                           14400.0)]}  # fmt: skip
    reply = api.client.post(f"/api/v1/sessions/{api.sid}/samples", json=body)
    assert reply.status_code == 204, reply.text
    power = [_sample(t0, 10, None, 100.0), _sample(t0 + dt.timedelta(hours=1), 10, None, 100.0)]
    power = [{**s, "device": "0"} for s in power]
    reply = api.client.post(f"/api/v1/sessions/{api.sid}/samples", json={"samples": power})
    assert reply.status_code == 204, reply.text
    [session] = api.client.get("/api/v1/sessions").json()
    assert session["peak_memory_mib"] == 3000
    assert session["energy_wh"] == pytest.approx(2 + 100)  # counter: 7200 J; power: 100 W for 1 h
    assert session["gpu_note"] == "no utilisation on MIG"  # kept when a later report has none
    assert session["gpu_hours"] >= 0
    with api.ledger.session() as db:
        assert len(db.scalars(select(GpuSample)).all()) == 4


def test_real_activity_is_passed_to_the_hub_and_an_idle_gpu_is_not(api):
    """What jupyterhub-idle-culler weighs: busy GPUs, kernels and terminals, never the future."""
    api.app.dependency_overrides[get_current_user] = signed_in_as("alice")
    url = f"/api/v1/sessions/{api.sid}/samples"
    now = dt.datetime.now(dt.UTC)
    idle = {**_sample(now, 900, None), "device": "0", "utilisation_pct": 3.0}
    busy = {**idle, "at": (now - dt.timedelta(seconds=5)).isoformat(), "utilisation_pct": 85.0}
    assert api.client.post(url, json={"samples": [idle]}).status_code == 204
    assert api.hub_calls == []  # 3 % is below sessions.gpu_busy_utilisation (10)
    assert api.client.post(url, json={"samples": [busy, idle]}).status_code == 204
    [call] = api.hub_calls
    assert call["path"] == "/hub/api/users/alice/activity"
    at = dt.datetime.fromisoformat(call["servers"][""]["last_activity"].replace("Z", "+00:00"))
    assert at == dt.datetime.fromisoformat(busy["at"]) and call["last_activity"]
    kernel = {"kernels": 1, "busy_kernels": 0, "terminals": 0,
              "last_activity": (now + dt.timedelta(hours=1)).isoformat()}  # fmt: skip
    assert api.client.post(url, json={"activity": kernel}).status_code == 204
    reported = api.hub_calls[-1]["servers"][""]["last_activity"]
    assert dt.datetime.fromisoformat(reported.replace("Z", "+00:00")) <= dt.datetime.now(dt.UTC)
    quiet = {**kernel, "last_activity": None}
    assert api.client.post(url, json={"activity": quiet}).status_code == 204
    assert len(api.hub_calls) == 2
    bad = {**kernel, "kernels": -1}
    assert api.client.post(url, json={"activity": bad}).status_code == 422


@pytest.mark.parametrize(
    ("user", "path", "body", "status"),
    [
        ("bob", "{sid}", {"samples": []}, 403),
        ("alice", "no-such-session", {"samples": []}, 404),
        ("alice", "{sid}", {"samples": [], "extra": 1}, 422),
        ("alice", "{sid}", {"samples": [{"device": "0"}]}, 422),
    ],
)
def test_reports_are_refused_unless_valid_and_the_owners(api, user, path, body, status):
    api.app.dependency_overrides[get_current_user] = signed_in_as(user)
    reply = api.client.post(f"/api/v1/sessions/{path.format(sid=api.sid)}/samples", json=body)
    assert reply.status_code == status, reply.text


def test_at_most_256_samples_per_report(api):
    api.app.dependency_overrides[get_current_user] = signed_in_as("alice")
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    body = {"samples": [_sample(at, 1, None)] * 257}
    assert api.client.post(f"/api/v1/sessions/{api.sid}/samples", json=body).status_code == 422


# --- the ledger --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_revision_0003_applies_and_reverts(ledger_url):
    migrate(ledger_url, "0002")
    migrate(ledger_url)
    ledger = Ledger(ledger_url)
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("gpu_samples")}
    assert {"session_id", "at", "device", "memory_used_mib", "energy_j"} <= columns
    assert "gpu_note" in {c["name"] for c in inspect(ledger.engine).get_columns("sessions")}
    ledger.dispose()
    command.downgrade(alembic_config(ledger_url), "0002")
    ledger = Ledger(ledger_url)
    assert "gpu_samples" not in inspect(ledger.engine).get_table_names()
    assert "gpu_note" not in {c["name"] for c in inspect(ledger.engine).get_columns("sessions")}
    ledger.dispose()
    migrate(ledger_url)  # and forward again
