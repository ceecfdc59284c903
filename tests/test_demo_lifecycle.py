"""`gpuaf demo` started and stopped as a newcomer would: Ctrl-C leaves no process behind."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest
from support.login import hub_token, login
from support.stack import start_server, start_stack

pytestmark = pytest.mark.e2e


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.ZombieProcess:  # e.g. a session agent that reported and ended
        return []


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path):
    stack = start_stack(tmp_path, simulate=None)  # no GPU here: CPU slices only
    try:
        banner = stack.log.read_text()
        assert "Log in with IAM as a demo user" in banner
        assert "alice  groups: higgs" in banner
        assert stack.url in banner
        client = login(stack.url, "bob")
        token = hub_token(client, "bob")
        client.close()
        auth = {"Authorization": f"token {token}"}
        slices = httpx.get(f"{stack.api}/slices", headers=auth).json()
        assert [s["name"] for s in slices if s["availability"]["capacity"]] == ["cpu"]
        start_server(stack, "bob", auth, "cpu")
        family = stack.descendants()
        names = " ".join(" ".join(_cmdline(p)) for p in family)
        for part in (
            "idp.mjs",
            "jupyterhub",
            "configurable-http-proxy",
            "gpuaf api",
            "jupyterhub-singleuser",
        ):
            assert part in names, f"{part} not among the demo's processes: {names}"
    finally:
        code = stack.interrupt()
    assert code == 0, stack.log_tail()
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]


def test_a_demo_without_gpus_offers_cpu_only_in_the_form(tmp_path):
    stack = start_stack(tmp_path, simulate=None)
    try:
        client = login(stack.url, "carol")
        html = client.get("/hub/spawn").text
        client.close()
        assert 'value="cpu"' in html
        assert "Simulated GPUs" not in html
        assert "5 other slices\n    are not offered by this facility" in html  # no GPU here
    finally:
        assert stack.interrupt() == 0
