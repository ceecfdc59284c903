"""Dashboards on the demo portal filled with generated use: the physicist's overview, the
admins' usage report (figures, CSV, chart), role checks, in Chromium with screenshots."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time

import httpx
import pytest
from support.login import browser_login, hub_token, login
from support.usage_data import fill, previous_month, remove

from gpuaf.ledger import Ledger
from gpuaf.settings import load_settings

pytestmark = pytest.mark.e2e
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def filled(stack):
    ledger = Ledger(load_settings(stack.settings_path).ledger_url)
    now = dt.datetime.now(dt.UTC)
    fixed = fill(ledger, now)
    since, until = previous_month(now)
    yield {"fixed": fixed, "since": since.date(), "until": until.date()}
    remove(ledger)
    ledger.dispose()


@pytest.fixture(scope="module")
def tokens(stack):
    out = {}
    for user in ("alice", "dana", "erin"):
        client = login(stack.url, user)
        out[user] = {"Authorization": f"token {hub_token(client, user)}"}
        client.close()
    return out


def report(stack, auth, **params):
    return httpx.get(f"{stack.api}/usage", params=params, headers=auth, timeout=60)


def test_the_report_shows_the_hand_checked_session_and_adds_up(stack, filled, tokens):
    period = {"since": filled["since"].isoformat(), "until": filled["until"].isoformat()}
    reply = report(stack, tokens["erin"], **period)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    fixed = filled["fixed"]
    row = next(r for r in body["users"] if (r["group"], r["user"]) == ("neutrino", "carol"))
    assert row["gpu_hours"] == pytest.approx(fixed["gpu_hours"])
    assert row["energy_wh"] == pytest.approx(fixed["energy_wh"])
    assert row["occupancy"] == pytest.approx(fixed["occupancy"])
    for group in body["groups"]:  # a group's figures are the sum of its users'
        users = [u for u in body["users"] if u["group"] == group["group"]]
        assert group["gpu_hours"] == pytest.approx(sum(u["gpu_hours"] for u in users), abs=1e-3)
        assert group["sessions"] == sum(u["sessions"] for u in users)
        daily = sum(body["daily"][group["group"]].values())
        assert daily == pytest.approx(group["gpu_hours"], abs=1e-2)
    assert {g["group"] for g in body["groups"]} == {"higgs", "neutrino"}
    # the CSV says the same
    rows = list(csv.DictReader(io.StringIO(
        httpx.get(f"{stack.api}/usage.csv", params=period, headers=tokens["erin"]).text
    )))  # fmt: skip
    carol = next(r for r in rows if (r["group"], r["user"]) == ("neutrino", "carol"))
    assert float(carol["gpu_hours"]) == pytest.approx(3.0)
    assert float(carol["energy_wh"]) == pytest.approx(600.0)
    assert len(rows) == len(body["users"]) + len(body["groups"])


def test_roles_decide_who_sees_what(stack, filled, tokens):
    period = {"since": filled["since"].isoformat(), "until": filled["until"].isoformat()}
    alice = report(stack, tokens["alice"], **period)
    assert alice.status_code == 403 and "collaboration-admin" in alice.json()["detail"]
    dana = report(stack, tokens["dana"], **period).json()  # higgs' collaboration admin
    assert {g["group"] for g in dana["groups"]} == {"higgs"}
    assert {u["user"] for u in dana["users"]} == {"alice", "carol", "dana"}
    other = report(stack, tokens["dana"], group="neutrino", **period)
    assert other.status_code == 403 and "You may see the groups higgs" in other.json()["detail"]
    bad = report(stack, tokens["erin"], since="2026-05-01", until="2026-04-01")
    assert bad.status_code == 400 and "must be after" in bad.json()["detail"]
    far = report(stack, tokens["erin"], since="2020-01-01", until="2026-01-01")
    assert far.status_code == 400 and "at most 400 days" in far.json()["detail"]


def test_the_pages_in_chromium(stack, filled, tokens, chromium, artifacts):
    portal = f"{stack.url}services/portal"
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    browser_login(page, stack.url, "alice")
    page.goto(f"{portal}/")  # the portal's front page is the overview
    page.wait_for_url(re.compile(r".*/services/portal/overview$"))
    hint = page.locator(".hint")
    assert "peaked at 3 GiB of GPU memory and 8 % utilisation" in hint.inner_text()
    assert "MIG 1g.18gb" in hint.inner_text()
    assert page.locator("nav.top a", has_text="Usage report").count() == 0  # not an admin
    page.screenshot(path=artifacts / "dashboard-01-overview.png", full_page=True)
    assert page.goto(f"{portal}/admin/usage").status == 403
    context.close()

    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    browser_login(page, stack.url, "erin")
    page.goto(f"{portal}/overview")
    page.locator("nav.top a", has_text="Usage report").click()
    page.wait_for_url(re.compile(r".*/admin/usage$"))
    # keyboard: the period of the generated data, then Enter
    page.fill("input[name=since]", filled["since"].isoformat())
    page.fill("input[name=until]", filled["until"].isoformat())
    page.locator("input[name=until]").press("Enter")
    page.wait_for_url(re.compile(r".*since=.*"))
    assert page.locator("svg.chart rect").count() > 10
    carol = page.locator("tr", has=page.locator("th", has_text="carol")).filter(has_text="neutrino")
    assert "3.00" in carol.inner_text() and "600.0" in carol.inner_text()
    assert "40 %" in carol.inner_text()
    page.screenshot(path=artifacts / "dashboard-02-usage-report.png", full_page=True)
    with page.expect_download() as download:
        page.locator("a", has_text="Download CSV").click()
    assert download.value.suggested_filename.startswith("gpuaf-usage-")
    assert page.locator("script").count() == 0  # the page needs no JavaScript
    context.close()


def test_admins_see_their_collaborations_live_sessions_and_stop_one(
    stack, filled, tokens, chromium, artifacts
):
    from support.stack import start_server

    from gpuaf.ledger.models import GpuSample, SessionRecord

    auth = {}
    for user, profile in (("carol", "cpu"), ("bob", "gpu-1")):
        client = login(stack.url, user)
        auth[user] = {"Authorization": f"token {hub_token(client, user)}"}
        client.close()
        start_server(stack, user, auth[user], profile)
    ledger = Ledger(load_settings(stack.settings_path).ledger_url)
    try:
        with ledger.session() as db:  # an hour of readings for carol's session: a sparkline
            carol = db.query(SessionRecord).filter_by(user_name="carol", state="running").one()
            carol_id = carol.id
            bob_id = db.query(SessionRecord).filter_by(user_name="bob", state="running").one().id
            now = dt.datetime.now(dt.UTC)
            for i in range(12):
                db.add(GpuSample(
                    session_id=carol.id, at=now - dt.timedelta(minutes=55 - 5 * i), device="0",
                    memory_used_mib=1000 + 500 * i, memory_total_mib=81559,
                    utilisation_pct=float(10 * (i % 6)), power_w=120.0, energy_j=None,
                ))  # fmt: skip
        api = f"{stack.api}/admin/sessions"
        assert httpx.get(api, headers=tokens["alice"]).status_code == 403
        seen = {r["user"] for r in httpx.get(api, headers=tokens["dana"]).json()}
        assert "carol" in seen and "bob" not in seen  # dana administers higgs only
        erin = {r["user"]: r for r in httpx.get(api, headers=tokens["erin"]).json()}
        assert {"carol", "bob"} <= set(erin) and len(erin["carol"]["utilisation"]) == 12
        refused = httpx.post(f"{api}/{bob_id}/stop", json={"reason": "testing"},
                             headers=tokens["dana"])  # fmt: skip
        assert refused.status_code == 404 and "that you may stop" in refused.json()["detail"]
        short = httpx.post(f"{api}/{carol_id}/stop", json={"reason": " x "}, headers=tokens["dana"])
        assert short.status_code == 400 and "3 to 500 characters" in short.json()["detail"]

        # the node map: bob's whole (simulated) H100 is busy; dana reads no name outside higgs
        def owners(who):
            data = httpx.get(f"{stack.api}/admin/nodes", headers=tokens[who]).json()
            assert data["reported"]
            return {u["user"] for n in data["nodes"] for g in n["gpus"] for u in g["slices"]}

        assert "bob" in owners("erin") and "bob" not in owners("dana")
        assert "another collaboration" in owners("dana")
        assert httpx.get(f"{stack.api}/admin/nodes", headers=tokens["alice"]).status_code == 403

        # dana stops carol's session from the page, with a reason, keyboard only
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        browser_login(page, stack.url, "dana")
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{stack.url}services/portal/admin/sessions")
        row = page.locator("tr", has=page.locator("th", has_text="carol"))
        assert row.locator("svg.spark").count() == 2
        page.screenshot(path=artifacts / "dashboard-03-live-sessions.png", full_page=True)
        # the page updates itself (the portal's own script, nothing from elsewhere)
        with ledger.session() as db:
            db.add(GpuSample(
                session_id=carol_id, at=dt.datetime.now(dt.UTC), device="0",
                memory_used_mib=7777, memory_total_mib=81559, utilisation_pct=93.0,
                power_w=120.0, energy_j=None,
            ))  # fmt: skip
        row.locator("[data-mem]", has_text="7777 MiB").wait_for(timeout=40_000)
        assert "93 %" in row.locator("[data-util]").inner_text()
        assert "Updated" in page.locator("[data-live-status]").inner_text()
        assert all(u.startswith(stack.url) for u in requested), requested
        nodes = context.new_page()
        nodes.goto(f"{stack.url}services/portal/admin/nodes")
        assert nodes.locator(".bar li.busy").count() >= 1
        nodes.screenshot(path=artifacts / "dashboard-05-nodes.png", full_page=True)
        nodes.close()
        row.locator("input[name=reason]").fill("node maintenance at 14:00")
        row.locator("input[name=reason]").press("Enter")
        page.wait_for_url(re.compile(r".*/admin/sessions$"))

        def ended():
            rows = httpx.get(f"{stack.api}/sessions", headers=auth["carol"]).json()
            mine = next(r for r in rows if r["id"] == carol_id)
            return mine if mine["state"] == "stopped" else None

        from support.stack import wait_until

        mine = wait_until(ended, 60, "carol's session to stop", stack)
        assert (
            mine["reason"] == "Stopped by dana (collaboration admin): node maintenance at 14:00"
        ), mine["history"]
        page.goto(f"{stack.url}services/portal/admin/audit?action=session.stop&actor=dana")
        assert "node maintenance at 14:00" in page.locator("table").inner_text()
        page.screenshot(path=artifacts / "dashboard-04-audit.png", full_page=True)
        context.close()
        assert httpx.get(f"{stack.url}services/portal/admin/audit",
                         headers=tokens["alice"]).status_code == 403  # fmt: skip
    finally:
        for user in ("carol", "bob"):
            httpx.delete(f"{stack.url}hub/api/users/{user}/server", headers=auth[user], timeout=60)
        ledger.dispose()


def test_a_collaboration_admin_edits_their_group_and_the_hub_follows(
    stack, filled, tokens, chromium, artifacts
):
    groups = f"{stack.api}/admin/groups"
    assert httpx.get(groups, headers=tokens["alice"]).status_code == 403
    mine = {g["name"]: g for g in httpx.get(groups, headers=tokens["dana"]).json()}
    assert set(mine) == {"higgs"} and mine["higgs"]["members"] >= 1  # who logged in so far
    original = mine["higgs"]
    assert "gpu-2" in original["profiles"]
    other = httpx.put(f"{groups}/neutrino", json={"profiles": ["cpu"]}, headers=tokens["dana"])
    assert other.status_code == 403 and "You may edit the groups higgs" in other.json()["detail"]
    bad = httpx.put(f"{groups}/higgs", json={"profiles": ["cpu", "gpu-9"]}, headers=tokens["dana"])
    assert bad.status_code == 400 and "Unknown slice profile(s) gpu-9" in bad.json()["detail"]
    try:
        # dana takes gpu-2 away from higgs and lowers the monthly GPU-hours, in the browser
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        browser_login(page, stack.url, "dana")
        page.goto(f"{stack.url}services/portal/admin/groups")
        form = page.locator("#group-higgs")
        form.locator("input[name=gpu_hours_per_month]").fill("150")
        form.locator("input[value=gpu-2]").uncheck()
        page.screenshot(path=artifacts / "dashboard-06-groups.png", full_page=True)
        form.locator("button.save").click()
        page.wait_for_url(re.compile(r".*/admin/groups(#group-higgs)?$"))
        assert "Last changed by dana" in page.locator("#group-higgs").inner_text()
        context.close()
        now = {g["name"]: g for g in httpx.get(groups, headers=tokens["dana"]).json()}["higgs"]
        assert now["gpu_hours_per_month"] == 150 and "gpu-2" not in now["profiles"]
        me = httpx.get(f"{stack.api}/me", headers=tokens["alice"]).json()
        assert "gpu-2" not in me["profiles"]

        # the hub (another process) reads the edits again every 5 s: alice may not book gpu-2
        time.sleep(6)
        reply = httpx.post(
            f"{stack.url}hub/api/users/alice/server",
            json={"profile": "gpu-2"},
            headers=tokens["alice"],
            timeout=60,
        )
        assert reply.status_code == 400, reply.text
        assert "gpu-2" in reply.text and "Slices you may book" in reply.text
        audit = httpx.get(f"{stack.api}/audit", params={"action": "group.edit"},
                          headers=tokens["erin"]).json()  # fmt: skip
        last = audit["items"][0]
        assert last["actor"] == "dana" and last["target"] == "higgs"
        assert "gpu-2" in last["detail"]["before"]["profiles"]
        assert "gpu-2" not in last["detail"]["after"]["profiles"]
    finally:
        restore = {k: original[k] for k in ("concurrent_slices", "gpu_hours_per_month", "profiles")}
        assert httpx.put(f"{groups}/higgs", json=restore, headers=tokens["erin"]).status_code == 200
        httpx.delete(f"{stack.url}hub/api/users/alice/server", headers=tokens["alice"], timeout=60)
