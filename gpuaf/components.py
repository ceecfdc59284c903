"""The proxy and the portal API run on their own (e.g. in their own pods) instead of by the hub.

By default ``gpuaf hub`` starts everything: JupyterHub starts configurable-http-proxy and
the portal API as a hub-managed service, all on loopback. With ``portal.proxy_api_url``
set, the hub uses a proxy someone else runs; with ``portal.api_url`` set, the portal API
is an external service of the hub, started with ``gpuaf api`` where it runs. The tokens
they share come from the environment (in Kubernetes: from a Secret), never from the
settings file.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from gpuaf.errors import SettingsError
from gpuaf.settings import Settings

# names of environment variables holding tokens
PROXY_TOKEN_ENV = "CONFIGPROXY_AUTH_TOKEN"  # noqa: S105 - read by JupyterHub and the proxy
API_TOKEN_ENV = "GPUAF_API_TOKEN"  # noqa: S105 - the portal API's service token


def _token(environ: MutableMapping[str, str], name: str, key: str, what: str) -> str:
    token = environ.get(name, "").strip()
    if not token:
        raise SettingsError(
            f"portal.{key} is set, so {what}; put the shared token in ${name} "
            f"(or leave portal.{key} empty to let the hub start it)"
        )
    return token


def hub_tokens(settings: Settings, environ: MutableMapping[str, str] | None = None) -> None:
    """Refuse to start a hub whose external proxy or API would not accept it."""
    environ = os.environ if environ is None else environ
    portal = settings.portal
    if portal.proxy_api_url:
        _token(environ, PROXY_TOKEN_ENV, "proxy_api_url", "the hub does not start the proxy")
    if portal.api_url:
        api_service_token(settings, environ)


def api_service_token(settings: Settings, environ: MutableMapping[str, str] | None = None) -> str:
    """The token the hub registers for the external portal API service."""
    environ = os.environ if environ is None else environ
    return _token(environ, API_TOKEN_ENV, "api_url", "the portal API is an external service")


def standalone_api_environment(
    settings: Settings, environ: MutableMapping[str, str] | None = None
) -> None:
    """Set the ``JUPYTERHUB_*`` variables the hub gives a service it starts, where unset.

    Values already in the environment win (e.g. ``JUPYTERHUB_API_URL`` pointing at the
    hub's in-cluster address rather than ``portal.hub_connect_url``).
    """
    environ = os.environ if environ is None else environ
    portal = settings.portal
    name = portal.service_name
    prefix = f"/services/{name}/"
    hub = (portal.hub_connect_url or f"http://{portal.hub_ip}:{portal.hub_port}").rstrip("/")
    token = environ.get("JUPYTERHUB_API_TOKEN") or api_service_token(settings, environ)
    defaults = {
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": f"{hub}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_SERVICE_URL": str(portal.api_url),
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_CLIENT_ID": f"service-{name}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
    }
    for key, value in defaults.items():
        environ.setdefault(key, value)


def service_auth(**traits: Any) -> Any:
    """The portal API's ``HubOAuth``, from the ``JUPYTERHUB_*`` variables as they are now.

    ``HubOAuth.base_url`` takes its default from ``$JUPYTERHUB_SERVICE_PREFIX`` when
    jupyterhub is first imported, which may be before :func:`standalone_api_environment`
    set it; so it is passed explicitly.
    """
    from jupyterhub.services.auth import HubOAuth

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return HubOAuth(base_url=prefix, **traits)
