"""``gpuaf submit`` (for real) and ``gpuaf jobs``: notebook jobs through the portal API.

Authentication is an IAM bearer token found as WLCG bearer-token discovery finds it:
``$BEARER_TOKEN``, else the file ``$BEARER_TOKEN_FILE``, else ``$XDG_RUNTIME_DIR/bt_u<uid>``,
else ``/tmp/bt_u<uid>`` (inside a session ``$BEARER_TOKEN_FILE`` is kept fresh). The
portal is ``--portal URL``, else ``$GPUAF_PORTAL_URL`` (set in sessions), else the one
of the settings file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from gpuaf.errors import PublicError
from gpuaf.settings import Settings

FINAL = ("succeeded", "failed", "cancelled")


def bearer_token(environ: dict[str, str] | None = None) -> str:
    env = dict(os.environ if environ is None else environ)
    if env.get("BEARER_TOKEN", "").strip():
        return env["BEARER_TOKEN"].strip()
    uid = os.getuid()
    candidates = [env.get("BEARER_TOKEN_FILE")]
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(f"{env['XDG_RUNTIME_DIR']}/bt_u{uid}")
    candidates.append(f"/tmp/bt_u{uid}")  # noqa: S108 - the WLCG discovery location
    for path in filter(None, candidates):
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if token:
            return token
    raise PublicError(
        "No bearer token found: set BEARER_TOKEN or BEARER_TOKEN_FILE (an IAM access token "
        "with the scopes compute.read, compute.create and compute.cancel)."
    )


def portal_url(settings: Settings, given: str | None) -> str:
    url = given or os.environ.get("GPUAF_PORTAL_URL")
    if not url:
        url = f"{settings.portal.url}services/{settings.portal.service_name}"
    return url.rstrip("/")


class Portal:
    def __init__(self, url: str, token: str, timeout: float = 60):
        self.base = url
        self.client = httpx.Client(
            base_url=f"{url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            reply = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise PublicError(f"The portal ({self.base}) could not be reached: {exc}.") from exc
        if reply.status_code >= 400:
            try:
                detail = reply.json().get("detail", reply.text)
            except ValueError:
                detail = reply.text.strip() or reply.reason_phrase
            raise PublicError(f"{detail} (HTTP {reply.status_code})")
        return reply


def submission(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    """The request body: the notebook's JSON and the fields as typed (JSON values)."""
    from gpuaf.notebooks.errors import NotebookError
    from gpuaf.notebooks.parameters import parse_param, parse_sweep
    from gpuaf.notebooks.validation import inside_home

    path = Path(args.notebook).expanduser().absolute()  # relative: to where you are
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookError(f"Cannot read the notebook {args.notebook}: {exc}.") from exc
    inside = inside_home(path, home)
    params = dict(parse_param(p) for p in args.param)
    sweeps = dict(parse_sweep(s) for s in args.sweep)
    return {
        "notebook": text,
        "path": inside.relative_to(home.resolve()).as_posix(),
        "slice": args.slice,
        "parameters": {k: json.dumps(v) for k, v in params.items()},
        "sweep": {k: json.dumps(v) for k, v in sweeps.items()},
        "target": args.target,
        "walltime": args.walltime,
        "name": args.name,
        "idempotency_key": str(uuid.uuid4()),
    }


def submit(settings: Settings, args: argparse.Namespace) -> int:
    home = Path(args.home or os.path.expanduser("~"))
    body = submission(args, home)
    portal = Portal(portal_url(settings, args.portal), bearer_token())
    job = portal.call("POST", "/jobs", json=body).json()
    print(f"submitted job {job['id']}: {len(job['items'])} item(s) on {job['profile']}, "
          f"{job['backend']} {job['batch_id']}")  # fmt: skip
    print(f"results: {job['output_dir']}/  follow: gpuaf jobs show {job['id']}")
    if args.wait:
        return wait(portal, job["id"])
    return 0


def wait(portal: Portal, job_id: str, interval: float = 5) -> int:
    last = None
    while True:
        job = portal.call("GET", f"/jobs/{job_id}").json()
        line = f"{job['state']}: {job['reason']}" if job["reason"] else job["state"]
        if line != last:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            last = line
        if job["state"] in FINAL:
            return 0 if job["state"] == "succeeded" else 1
        time.sleep(interval)


def add_jobs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--portal", metavar="URL", help="portal (default: $GPUAF_PORTAL_URL)")
    sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    sub.add_parser("list", help="my jobs, newest first (the default)")
    show = sub.add_parser("show", help="one job and its items")
    show.add_argument("job_id", metavar="ID")
    logs = sub.add_parser("logs", help="an item's log")
    logs.add_argument("job_id", metavar="ID")
    logs.add_argument("--item", type=int, default=0, metavar="I", help="sweep item (default 0)")
    cancel = sub.add_parser("cancel", help="cancel a job's items that have not ended")
    cancel.add_argument("job_id", metavar="ID")


def jobs(settings: Settings, args: argparse.Namespace) -> int:
    portal = Portal(portal_url(settings, args.portal), bearer_token())
    action = args.jobs_command or "list"
    if action == "list":
        rows = portal.call("GET", "/jobs").json()
        print(f"{'JOB':<44} {'STATE':<10} {'ITEMS':<14} {'SLICE':<14} SUBMITTED")
        for job in rows:
            items = " ".join(f"{n} {s}" for s, n in sorted(job["counts"].items()))
            print(f"{job['id']:<44} {job['state']:<10} {items:<14} {job['profile']:<14} "
                  f"{job['created_at'][:19].replace('T', ' ')}")  # fmt: skip
        return 0
    if action == "logs":
        reply = portal.call("GET", f"/jobs/{args.job_id}/items/{args.item}/log")
        sys.stdout.write(reply.text)
        return 0
    path = f"/jobs/{args.job_id}" + ("/cancel" if action == "cancel" else "")
    job = portal.call("POST" if action == "cancel" else "GET", path).json()
    print(f"job {job['id']} ({job['name']}): {job['state']}" +
          (f" - {job['reason']}" if job["reason"] else ""))  # fmt: skip
    print(f"  slice {job['profile']}, {job['backend']} {job['batch_id']}, {job['output_dir']}/")
    for item in job["items"]:
        params = json.dumps(item["parameters"])
        why = f" - {item['reason']}" if item["reason"] else ""
        print(f"  item-{item['index']}: {item['state']}{why}  {params}")
    return 0
