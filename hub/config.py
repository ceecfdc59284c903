"""Build the JupyterHub configuration from the gpuaf settings.

``jupyterhub_config.py`` beside this module is the file the hub is started with; it
only calls :func:`configure`. Everything a site changes lives in the settings file.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from gpuaf.components import api_service_token
from gpuaf.hub.handlers import HANDLERS
from gpuaf.settings import ENV_VAR, Settings
from gpuaf.templates import HUB_TEMPLATES

CHP_ENV = "GPUAF_PROXY_COMMAND"


def proxy_command() -> str:
    """configurable-http-proxy: $GPUAF_PROXY_COMMAND, node_modules of the checkout, or PATH."""
    if os.environ.get(CHP_ENV):
        return os.environ[CHP_ENV]
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "node_modules" / ".bin" / "configurable-http-proxy"
        if candidate.exists():
            return str(candidate)
    return shutil.which("configurable-http-proxy") or "configurable-http-proxy"


def configure(c: Any, settings: Settings, settings_path: str) -> None:
    from gpuaf.hub.auth import configure_authenticator

    portal = settings.portal
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    service = portal.service_name

    c.JupyterHub.ip = portal.host
    c.JupyterHub.port = portal.port
    c.JupyterHub.hub_ip = portal.hub_ip
    c.JupyterHub.hub_port = portal.hub_port
    if portal.hub_connect_url:
        c.JupyterHub.hub_connect_url = portal.hub_connect_url
    c.JupyterHub.extra_handlers = list(HANDLERS)
    c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
    c.JupyterHub.template_paths = [str(HUB_TEMPLATES)]
    c.JupyterHub.template_vars = {
        "gpuaf_service": service,
        "gpuaf_notices": SessionNotices(settings_path),
    }
    if portal.proxy_api_url:  # run on its own; JupyterHub reads $CONFIGPROXY_AUTH_TOKEN
        c.ConfigurableHTTPProxy.should_start = False
        c.ConfigurableHTTPProxy.api_url = portal.proxy_api_url
    else:
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{portal.proxy_api_port}"
        c.ConfigurableHTTPProxy.command = [proxy_command()]
        c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")

    configure_authenticator(c, settings, f"{portal.url}hub/oauth_callback", settings_path)

    c.JupyterHub.spawner_class = "slice"
    c.SliceSpawner.settings_file = settings_path
    c.Spawner.default_url = settings.sessions.default_url
    c.Spawner.start_timeout = settings.sessions.start_timeout
    c.Spawner.http_timeout = settings.sessions.http_timeout
    c.Spawner.poll_interval = settings.sessions.poll_interval
    # activity is what the session agent reports through the portal API (kernels, terminals,
    # GPU use): not the proxy's count of requests, which an open, idle browser tab keeps up
    c.JupyterHub.last_activity_interval = 0
    c.JupyterHub.allow_named_servers = settings.sessions.named_servers
    c.JupyterHub.named_server_limit_per_user = 0  # the quota of concurrent slices decides

    culler = idle_culler(settings)
    c.JupyterHub.services = [*([culler] if culler else []), portal_service(settings, settings_path)]
    c.JupyterHub.load_roles = [
        {"name": "user", "scopes": ["self", f"access:services!service={service}"]},
        # a session's own token may also reach the portal (its GPU samples)
        {
            "name": "server",
            "scopes": [
                "users:activity!user",
                "access:servers!server",
                f"access:services!service={service}",
            ],
        },
        {
            "name": f"{service}-service",
            "services": [service],
            "scopes": [
                "list:users",
                "read:users",
                "read:users:groups",
                "read:servers",
                "admin:servers",
                "users:activity",  # the session agent's reports of real activity
            ],
        },
        *(
            [{"name": "idle-culler", "services": ["idle-culler"], "scopes": CULLER_SCOPES}]
            if culler
            else []
        ),
    ]


def portal_service(settings: Settings, settings_path: str) -> dict[str, Any]:
    """The portal API: started by the hub, or an external service (portal.api_url)."""
    portal = settings.portal
    service: dict[str, Any] = {
        "name": portal.service_name,
        "display": True,
        "info": {"description": "gpuaf portal: dashboards and REST API"},
        "oauth_no_confirm": True,
    }
    if portal.api_url:  # run on its own with `gpuaf api`; the same token on both sides
        return {**service, "url": portal.api_url, "api_token": api_service_token(settings)}
    return {
        **service,
        "url": f"http://127.0.0.1:{portal.api_port}",
        "command": [sys.executable, "-m", "gpuaf", "api", "--settings", settings_path],
        "environment": {ENV_VAR: settings_path},
    }


class SessionNotices:
    """Template variable: the signed-in user's sessions that were lost or failed lately."""

    def __init__(self, settings_path: str):
        self.settings_path = settings_path

    def __call__(self, user: Any) -> list:
        if user is None:
            return []
        from gpuaf.facility import facility_for
        from gpuaf.ledger.sessions import recent_endings

        return recent_endings(facility_for(self.settings_path).ledger, user.name)


CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def idle_culler(settings: Settings) -> dict[str, Any] | None:
    """jupyterhub-idle-culler as a hub-managed service, when sessions.idle_timeout is set."""
    timeout = settings.sessions.idle_timeout
    if not timeout:
        return None
    every = max(5, min(300, timeout // 4))
    return {
        "name": "idle-culler",
        "command": [
            # through gpuaf.restart: the culler ends with its hub, even after kill -9
            sys.executable, "-m", "gpuaf.restart", "jupyterhub_idle_culler",
            f"--timeout={timeout}", f"--cull-every={every}", "--remove-named-servers=false",
        ],
    }  # fmt: skip
