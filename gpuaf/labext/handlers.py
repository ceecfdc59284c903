"""The session server's ``gpuaf/*`` routes: a notebook's parameters, the portal's slices,
the submission of a notebook job to the portal (``POST {GPUAF_PORTAL_URL}/api/v1/jobs``)
and the job's state (``gpuaf/jobs/<id>``, relayed from the portal).

Values arrive as the text the user typed (JSON, as ``gpuaf submit --param``) and are
checked by :mod:`gpuaf.notebooks` before anything leaves the session; refusals are
``{"detail": ...}`` with the status of the NotebookError. The portal's answer is returned
unchanged (status and body); an unreachable portal is a 502.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import tornado.web
from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from gpuaf.labext.freeze import freeze_environment
from gpuaf.notebooks.errors import NotebookError
from gpuaf.notebooks.parameters import declared_parameters
from gpuaf.notebooks.request import check_submission, json_default, limit
from gpuaf.notebooks.validation import inside_home, load_notebook

PORTAL_TIMEOUT_S = 60
DEFAULT_MAX_NOTEBOOK = 10 * 1024 * 1024  # the portal checks its own limit too


class Refused(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class GpuafHandler(APIHandler):
    def refuse(self, status: int, detail: str) -> None:
        self.set_status(status)
        self.finish({"detail": detail})

    async def read_notebook(self, path: object) -> tuple[str, Any]:
        """The notebook at the API path ``path``, which must be inside the server's root."""
        if not isinstance(path, str) or not path.strip():
            raise Refused(400, "Give the path of a notebook (.ipynb).")
        root = self.settings.get("server_root_dir") or self.serverapp.root_dir
        try:
            full = inside_home(path, root)
            max_size = limit("GPUAF_MAX_NOTEBOOK_SIZE", DEFAULT_MAX_NOTEBOOK)
            api_path = full.relative_to(Path(root).resolve()).as_posix()
            cm = self.contents_manager
            try:
                model = await ensure_async(
                    cm.get(api_path, content=True, type="file", format="text")
                )
            except tornado.web.HTTPError as exc:
                raise Refused(
                    exc.status_code, f"Cannot read the notebook {path}: {exc.log_message}."
                ) from exc
            nb = load_notebook(
                model["content"].encode("utf-8"), max_size=max_size, name=f"The notebook {path}"
            )
        except NotebookError as exc:
            raise Refused(exc.status, str(exc)) from exc
        return api_path, nb

    def portal(self) -> tuple[str, dict[str, str]]:
        url = os.environ.get("GPUAF_PORTAL_URL", "").rstrip("/")
        if not url:
            raise Refused(503, "This server is not a gpuaf session (GPUAF_PORTAL_URL is not set).")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        return f"{url}/api/v1", {"Authorization": f"token {token}"}

    async def relay(
        self, method: str, route: str, body: dict | None = None, extra: dict | None = None
    ) -> None:
        """The portal's answer to ``method route``, returned unchanged."""
        base, headers = self.portal()
        headers.update(extra or {})
        try:
            async with httpx.AsyncClient(timeout=PORTAL_TIMEOUT_S) as client:
                reply = await client.request(method, base + route, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Refused(
                502,
                f"The portal ({base}) could not be reached: {exc.__class__.__name__}"
                f"{': ' + str(exc) if str(exc) else ''}. Nothing was submitted; try again "
                "in a moment.",
            ) from exc
        self.set_status(reply.status_code)
        self.set_header("Content-Type", reply.headers.get("content-type", "application/json"))
        self.finish(reply.content)


class ParametersHandler(GpuafHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            _path, nb = await self.read_notebook(self.get_query_argument("path", ""))
        except Refused as exc:
            return self.refuse(exc.status, exc.detail)
        declared = declared_parameters(nb)
        values, defaults = {}, {}
        for name, p in (declared or {}).items():
            is_json, value = json_default(p.default_text)
            values[name] = value
            defaults[name] = {
                "text": p.default_text,
                "json": is_json,
                "type": p.type_name,
                "help": p.help,
            }
        self.finish({"parameters": values, "defaults": defaults, "has_cell": declared is not None})


class SlicesHandler(GpuafHandler):
    route = "/slices"

    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            await self.relay("GET", self.route)
        except Refused as exc:
            self.refuse(exc.status, exc.detail)


class TargetsHandler(SlicesHandler):
    route = "/targets"  # the local queue and the Grid sites notebook jobs may go to


def job_token() -> dict[str, str]:
    """The session's IAM token (kept fresh in $BEARER_TOKEN_FILE), for the job to use."""
    path = os.environ.get("BEARER_TOKEN_FILE")
    try:
        token = Path(path).read_text(encoding="utf-8").strip() if path else ""
    except OSError:
        token = ""
    return {"X-Gpuaf-Job-Token": token} if token else {}


def home_relative(root: str, api_path: str) -> str:
    """The path relative to the user's home (the server's root in a gpuaf session)."""
    full = Path(root).resolve() / api_path
    home = Path(os.path.expanduser("~")).resolve()
    return full.relative_to(home).as_posix() if full.is_relative_to(home) else api_path


class SubmitHandler(GpuafHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        try:
            try:
                body = json.loads(self.request.body or b"null")
            except json.JSONDecodeError as exc:
                raise Refused(400, f"The request is not JSON ({exc.msg}).") from exc
            api_path, nb = await self.read_notebook(
                body.get("path") if isinstance(body, dict) else None
            )
            try:
                fields = check_submission(body, nb)
            except NotebookError as exc:
                raise Refused(exc.status, str(exc)) from exc
            self.portal()  # not a gpuaf session: refused before the freeze
            root = self.settings.get("server_root_dir") or self.serverapp.root_dir
            job = {
                "notebook": nb,
                "path": home_relative(root, api_path),
                **fields,
                # checked values, sent as the portal takes them: JSON text
                "parameters": {k: json.dumps(v) for k, v in fields["parameters"].items()},
                "sweep": {k: json.dumps(v) for k, v in fields["sweep"].items()},
                "environment": await freeze_environment(),
            }
            self.log.info("gpuaf: submitting %s to slice %s", api_path, fields["slice"])
            await self.relay("POST", "/jobs", job, job_token())
        except Refused as exc:
            self.refuse(exc.status, exc.detail)


class JobHandler(GpuafHandler):
    """``GET gpuaf/jobs/<id>``: the portal's word on a job, for the dialog that follows it."""

    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        try:
            await self.relay("GET", f"/jobs/{job_id}")
        except Refused as exc:
            self.refuse(exc.status, exc.detail)


def setup_handlers(web_app: Any) -> None:
    base = url_path_join(web_app.settings["base_url"], "gpuaf")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "parameters"), ParametersHandler),
            (url_path_join(base, "slices"), SlicesHandler),
            (url_path_join(base, "targets"), TargetsHandler),
            (url_path_join(base, "submit"), SubmitHandler),
            (url_path_join(base, "jobs", r"([A-Za-z0-9][A-Za-z0-9_.-]{0,79})"), JobHandler),
        ],
    )
