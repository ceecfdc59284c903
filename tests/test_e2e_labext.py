"""'Submit as batch job' in real Chromium, in alice's JupyterLab behind the real hub."""

from __future__ import annotations

import json
import os
import re
import uuid

import httpx
import nbformat
import pytest
from support.stack import start_server, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LABEXTENSION = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    ".venv/share/jupyter/labextensions/gpuaf-labextension/package.json",
)
NOTEBOOK = "labext-demo.ipynb"


@pytest.fixture(scope="module")
def built():
    if not os.path.exists(LABEXTENSION):
        if os.environ.get("CI"):
            pytest.fail("the JupyterLab extension is not built (scripts/lib.sh build_labextension)")
        pytest.skip("the JupyterLab extension is not built: run scripts/test or see labextension/")


def write_notebook(stack, token: str) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("lr = 0.1\nepochs = 3", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("print(lr, epochs)"),
            nbformat.v4.new_code_cell(
                "import os\n"
                "print('token-file', os.path.isfile(os.environ.get('BEARER_TOKEN_FILE', '')))"
            ),
        ],
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Py"}},
    )
    reply = httpx.put(
        f"{stack.url}user/alice/api/contents/{NOTEBOOK}",
        json={"type": "notebook", "format": "json", "content": nb},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert reply.status_code in (200, 201), reply.text


def test_submit_button_dialog_and_request_in_chromium(
    built, stack, alice_token, chromium, artifacts
):
    auth = {"Authorization": f"token {alice_token}"}
    model = httpx.get(f"{stack.url}hub/api/users/alice", headers=auth).json()
    if not model["servers"].get("", {}).get("ready"):
        start_server(stack, "alice", auth, "cpu")
    write_notebook(stack, alice_token)

    try:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        shot = lambda name: page.screenshot(path=artifacts / f"labext-{name}.png")  # noqa: E731
        page.goto(stack.url)
        page.click("#gpuaf-login")
        page.wait_for_url(re.compile(r".*/interaction/.*"))
        page.fill("input[name=login]", "alice")
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/hub/.*|.*/user/alice/.*"))
        page.goto(f"{stack.url}user/alice/lab/tree/{NOTEBOOK}")

        button = page.locator(".jp-NotebookPanel-toolbar .gpuaf-submit-button")
        button.wait_for(timeout=90_000)
        assert "Submit as batch job" in button.inner_text()
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        shot("01-notebook-toolbar")

        button.click()
        dialog = page.locator(".jp-Dialog")
        dialog.locator("#gpuaf-slice").wait_for(timeout=30_000)
        options = dialog.locator("#gpuaf-slice option")
        texts = options.all_inner_texts()
        assert texts, "no slices in the dialog"
        assert all(re.search(r"\d+ free · \d+ waiting", t) for t in texts), texts
        assert any(t.startswith("CPU") for t in texts), texts
        assert dialog.locator("#gpuaf-param-lr").input_value() == "0.1"
        assert dialog.locator("#gpuaf-param-epochs").input_value() == "3"
        assert dialog.locator("#gpuaf-target option").all_inner_texts() == [
            "the local queue (local)"
        ]
        shot("02-dialog")

        # keyboard only: the parameter, a sweep, a walltime the slice does not allow, Enter
        dialog_slice = dialog.locator("#gpuaf-slice").input_value()
        dialog.locator("#gpuaf-param-lr").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.05")
        dialog.locator("#gpuaf-sweep-name").select_option("epochs")
        assert dialog.locator("#gpuaf-param-epochs").is_disabled()  # swept, not a parameter
        dialog.locator("#gpuaf-sweep-values").fill("1, 2")
        dialog.locator("#gpuaf-walltime").fill("9d")
        dialog.locator("#gpuaf-sweep-values").focus()
        with page.expect_response(
            re.compile(r".*/user/alice/gpuaf/submit(\?.*)?$"), timeout=120_000
        ) as got:
            page.keyboard.press("Enter")
        sent = json.loads(got.value.request.post_data or "{}")
        assert sent["slice"] == dialog_slice
        assert sent["path"] == NOTEBOOK
        assert sent["parameters"] == {"lr": "0.05"}  # epochs is swept, not a parameter
        assert sent["sweep"] == {"epochs": "1, 2"}
        assert sent["target"] == "local"
        key = sent["idempotency_key"]
        uuid.UUID(key)
        # the portal refuses the walltime: its message in the dialog, nothing submitted
        assert got.value.status == 400
        error = page.locator(".jp-Dialog .gpuaf-submit-error[role=alert]")
        error.wait_for(timeout=30_000)
        assert "give 1m to" in error.inner_text() and "HTTP 400" in error.inner_text()
        shot("03-portal-refusal")

        # fixed and sent again: the same key, the job is made and followed to its end
        page.locator(".jp-Dialog #gpuaf-walltime").fill("")
        with page.expect_response(re.compile(r".*/gpuaf/submit(\?.*)?$")) as again:
            page.locator(".jp-Dialog .jp-mod-accept").click()
        assert json.loads(again.value.request.post_data)["idempotency_key"] == key
        assert again.value.status == 201, again.value.text()
        job = again.value.json()
        result = page.locator(".jp-Dialog .gpuaf-submit-result")
        result.wait_for(timeout=30_000)
        assert f"({job['id']})" in result.inner_text() and "2 items" in result.inner_text()
        assert result.locator("a").get_attribute("href") == f"/services/portal/jobs/{job['id']}"
        status = result.locator(".gpuaf-job-status[data-state=succeeded]")
        status.wait_for(timeout=180_000)  # the dialog follows the job while it is open
        assert "2 succeeded" in status.inner_text()
        shot("04-job-succeeded")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        job = httpx.get(f"{stack.api}/jobs/{job['id']}", headers=auth).json()
        executed = httpx.get(
            stack.url.rstrip("/") + job["items"][1]["notebook_url"], headers=auth, timeout=60
        )
        assert "0.05 2" in executed.text  # print(lr, epochs) of item 1
        assert "token-file True" in executed.text  # the session's IAM token went along
        # the job's page, as the dialog's link opens it (the portal logs in through the hub)
        job_page = context.new_page()
        job_page.goto(stack.url.rstrip("/") + job["url"])
        job_page.locator("text=item-1").wait_for(timeout=30_000)
        assert "succeeded" in job_page.locator("dl").inner_text()
        job_page.screenshot(path=artifacts / "labext-06-job-page.png", full_page=True)
        job_page.close()

        # the same command in the command palette
        page.locator(".jp-Dialog").wait_for(state="detached")
        page.keyboard.press("Control+Shift+C")
        page.keyboard.type("Submit as batch")
        item = page.locator(".lm-CommandPalette-item", has_text="Submit as batch job")
        item.wait_for(timeout=10_000)
        shot("05-palette")
        page.keyboard.press("Enter")
        page.locator(".jp-Dialog #gpuaf-slice").wait_for(timeout=30_000)
        page.keyboard.press("Escape")
        context.close()
    finally:  # the next tests expect alice without a server
        users = f"{stack.url}hub/api/users/alice"
        httpx.delete(f"{users}/server", headers=auth, timeout=60)
        wait_until(
            lambda: not httpx.get(users, headers=auth).json()["servers"], 60, "alice's stop", stack
        )
