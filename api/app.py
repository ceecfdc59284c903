"""The FastAPI application of the portal API.

It runs as a JupyterHub-managed service: the hub passes its URL prefix, API URL and
token in ``JUPYTERHUB_*`` variables, and every route lives under that prefix.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jupyterhub.services.auth import HubOAuth

from gpuaf import __version__
from gpuaf.api import housekeeping, jobs_follow, reconciler
from gpuaf.api.identity import HubIdentity, NotAuthenticated
from gpuaf.api.routes import (
    admin,
    audit,
    clusters,
    dashboards,
    groups,
    health,
    jobs,
    me,
    oauth,
    pages,
    samples,
    sessions,
    slices,
    usage,
)
from gpuaf.api.tokens import TokenRefused, TokenValidator
from gpuaf.errors import PublicError
from gpuaf.facility import Facility
from gpuaf.ledger import migrate
from gpuaf.networks import UntrustedNetwork, check_client, forwarded_client

log = logging.getLogger("gpuaf.api")


def create_app(facility: Facility, hub_auth: HubOAuth) -> FastAPI:
    prefix = hub_auth.base_url  # e.g. /services/portal/
    api = prefix + "api/v1"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(facility.settings.ledger_url, password_file=facility.settings.ledger.password_file)
        async with httpx.AsyncClient(timeout=10) as http:
            tokens = TokenValidator.from_settings(facility.settings.iam, http)
            app.state.identity = HubIdentity(hub_auth, http, tokens, facility.settings)
            task = asyncio.create_task(reconciler.run_forever(facility, app.state.identity))
            chores = asyncio.create_task(housekeeping.run_forever(facility))
            follow = asyncio.create_task(jobs_follow.run_forever(facility))
            yield
            for background in (task, chores, follow):
                background.cancel()
        await facility.backend.close()
        facility.ledger.dispose()

    app = FastAPI(
        title="gpuaf portal API",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{api}/openapi.json",
        docs_url=f"{api}/docs",
        redoc_url=None,
        description="Slices, sessions, notebook jobs and identity of the GPU analysis facility. "
        "Authenticate with a JupyterHub API token: `Authorization: token <token>`.",
    )
    app.state.facility = facility
    app.include_router(health.router, prefix=api)
    app.include_router(me.router, prefix=api)
    app.include_router(slices.router, prefix=api)
    app.include_router(audit.router, prefix=api)
    app.include_router(sessions.router, prefix=api)
    app.include_router(samples.router, prefix=api)
    app.include_router(jobs.router, prefix=api)
    app.include_router(clusters.router, prefix=api)
    app.include_router(usage.router, prefix=api)
    app.include_router(admin.api_router, prefix=api)
    app.include_router(groups.api_router, prefix=api)
    # the pages' script (portal-ui/, built with npm): served here, never from a CDN
    static = Path(__file__).with_name("static")
    app.mount(f"{prefix}static", StaticFiles(directory=static, check_dir=False), name="static")
    app.include_router(oauth.router, prefix=prefix.rstrip("/"))
    app.include_router(pages.router, prefix=prefix.rstrip("/"))
    app.include_router(dashboards.router, prefix=prefix.rstrip("/"))
    app.include_router(admin.router, prefix=prefix.rstrip("/"))
    app.include_router(groups.router, prefix=prefix.rstrip("/"))

    @app.middleware("http")
    async def trusted_networks(request: Request, call_next):
        client = forwarded_client(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            facility.settings.portal.trusted_proxies,
        )
        request.state.client = client
        if request.url.path != f"{api}/health":
            try:
                check_client(client, facility.settings.portal.trusted_networks)
            except UntrustedNetwork as exc:
                await asyncio.to_thread(
                    facility.ledger.audit, "-", "api.refused", request.url.path,
                    client_addr=client, reason="untrusted-network",
                )  # fmt: skip
                return JSONResponse({"detail": exc.message}, status_code=exc.status)
        return await call_next(request)

    @app.exception_handler(PublicError)
    async def public_error(request: Request, exc: PublicError) -> JSONResponse:
        if isinstance(exc, NotAuthenticated) and _wants_html(request):
            return RedirectResponse(f"{prefix}login?next={request.url.path}", 302)
        if exc.log_message != exc.message:
            log.warning("%s %s: %s", request.method, request.url.path, exc.log_message)
        headers = None
        if isinstance(exc, TokenRefused):
            headers = {"WWW-Authenticate": exc.www_authenticate}
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.get(prefix.rstrip("/") or "/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{prefix}overview", 302)  # people first; the API has /docs

    return app


def _wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")
