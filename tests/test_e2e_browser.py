"""The whole path a physicist walks, in real Chromium: login, pick a slice, lab, stop."""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_login_spawn_lab_and_stop_in_chromium(stack, chromium, artifacts):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    shot = lambda name: page.screenshot(path=artifacts / f"{name}.png", full_page=True)  # noqa: E731

    page.goto(stack.url)
    assert page.locator("#gpuaf-login").inner_text() == "Log in with IAM"
    shot("01-login")
    page.click("#gpuaf-login")
    page.wait_for_url(re.compile(r".*/interaction/.*"))  # the provider's own login page
    page.fill("input[name=login]", "carol")
    page.fill("input[name=password]", "demo")
    shot("02-provider-login")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/hub/spawn$"))

    # carol is in both groups: every profile the simulated inventory can serve
    values = page.locator("input[name=profile]").evaluate_all("els => els.map(e => e.value)")
    assert values == ["cpu", "mig-1g.18gb", "mig-3g.71gb", "mps-25", "gpu-1", "gpu-2"]
    assert page.locator(".gpuaf-simulated").is_visible()
    assert page.locator("#slice-cpu").is_checked()
    shot("03-spawn-form")

    page.check("#slice-mig-1g\\.18gb")
    page.click("form#spawn_form [type=submit]")
    page.wait_for_url(re.compile(r".*/spawn-pending/carol.*|.*/user/carol/lab.*"))
    if "spawn-pending" in page.url:
        page.locator(".progress-bar").wait_for()
        shot("04-progress")
    page.wait_for_url(re.compile(r".*/user/carol/lab.*"), timeout=60_000)
    page.locator("#jp-main-dock-panel").wait_for(timeout=60_000)
    shot("05-jupyterlab")

    # the portal API answers for the browser user, with no second login
    page.goto(f"{stack.api}/me")
    me = json.loads(page.locator("body").inner_text())
    assert me["name"] == "carol" and me["auth"] == "cookie"
    assert me["groups"] == ["higgs", "neutrino"]

    page.goto(f"{stack.url}hub/home")
    shot("06-home-running")
    page.click("#stop")
    page.locator("#stop").wait_for(state="hidden", timeout=30_000)
    assert "Start My Server" in page.locator("#start").inner_text()
    shot("07-home-stopped")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = [json.loads(p.read_text()) for p in (stack.data_dir / "local-jobs").glob("*.json")]
        carol = [j for j in jobs if j["user"] == "carol"]
        if carol and carol[0]["state"] != "running":
            break
        time.sleep(0.3)
    assert len(carol) == 1
    assert carol[0]["state"] == "cancelled"
    assert carol[0]["profile"] == "mig-1g.18gb"
    assert carol[0]["devices"][0].startswith("MIG-sim")

    # logout ends the hub's and the portal's login, and the provider's session
    page.goto(f"{stack.url}hub/home")
    page.click("text=Logout")
    page.wait_for_url(re.compile(r".*/session/end.*|.*/hub/login.*"))
    shot("08-logout")
    if "/session/end" in page.url:  # the provider asks to confirm its own sign-out
        page.click("button[autofocus], button[type=submit]")
        page.wait_for_url(re.compile(r".*/hub/login.*|.*/session/end/success.*"))
    page.goto(f"{stack.api}/me")
    assert "/hub/login" in page.url or "interaction" in page.url  # asked to log in again
    context.close()
