"""The hub with a proxy and a portal API that run on their own (portal.proxy_api_url, api_url).

The JupyterHub configuration is built by running the real ``jupyterhub_config.py`` with
a traitlets ``Config``, as JupyterHub does; only the IAM discovery is faked.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

import gpuaf.hub.auth
from gpuaf import cli, components
from gpuaf.errors import SettingsError
from gpuaf.settings import ENV_VAR, EXAMPLE, load_settings

CONFIG_FILE = Path(gpuaf.hub.auth.__file__).with_name("jupyterhub_config.py")
EXTERNAL = {
    "proxy_api_url": "http://gpuaf-proxy-api:8001",
    "api_url": "http://gpuaf-api:8091",
    "api_ip": "0.0.0.0",
    "hub_ip": "0.0.0.0",
    "hub_connect_url": "http://gpuaf-hub:8081",
}


def _settings_file(tmp_path: Path, **portal: Any) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["portal"].update(portal, data_dir=str(tmp_path / "data"))
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def _no_iam(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {"authorization_endpoint": "https://iam/authorize", "token_endpoint": "https://iam/t"}
    monkeypatch.setattr(gpuaf.hub.auth, "discover", lambda issuer, timeout=10.0: doc)
    for name in (components.PROXY_TOKEN_ENV, components.API_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


def _hub_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    config = Config()
    monkeypatch.setenv(ENV_VAR, str(path))
    runpy.run_path(str(CONFIG_FILE), init_globals={"get_config": lambda: config})
    return config


def _portal_service(config: Config) -> dict[str, Any]:
    (service,) = [s for s in config.JupyterHub.services if s["name"] == "portal"]
    return service


def test_by_default_the_hub_starts_the_proxy_and_the_api(tmp_path, monkeypatch):
    config = _hub_config(_settings_file(tmp_path), monkeypatch)
    proxy = config.ConfigurableHTTPProxy
    assert "should_start" not in proxy
    assert proxy.api_url == "http://127.0.0.1:8082"
    assert proxy.command and proxy.pid_file
    service = _portal_service(config)
    assert service["url"] == "http://127.0.0.1:8091"
    assert service["command"][-3:] == ["api", "--settings", str(tmp_path / "settings.yaml")]
    assert "api_token" not in service


def test_with_external_parts_the_hub_starts_neither(tmp_path, monkeypatch):
    monkeypatch.setenv(components.PROXY_TOKEN_ENV, "proxy-token")
    monkeypatch.setenv(components.API_TOKEN_ENV, "api-token")
    config = _hub_config(_settings_file(tmp_path, **EXTERNAL), monkeypatch)
    proxy = config.ConfigurableHTTPProxy
    assert proxy.should_start is False
    assert proxy.api_url == "http://gpuaf-proxy-api:8001"
    assert "command" not in proxy and "auth_token" not in proxy  # JupyterHub reads the env
    assert config.JupyterHub.hub_connect_url == "http://gpuaf-hub:8081"
    service = _portal_service(config)
    assert service["url"] == "http://gpuaf-api:8091"
    assert service["api_token"] == "api-token"
    assert "command" not in service and "environment" not in service
    roles = {r["name"]: r for r in config.JupyterHub.load_roles}
    assert roles["portal-service"]["services"] == ["portal"]


def test_an_external_api_without_its_token_is_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=r"portal.api_url is set.*\$GPUAF_API_TOKEN"):
        _hub_config(_settings_file(tmp_path, api_url="http://gpuaf-api:8091"), monkeypatch)


def test_gpuaf_hub_refuses_an_external_proxy_without_its_token(tmp_path, capsys):
    path = _settings_file(tmp_path, proxy_api_url="http://proxy:8001")
    assert cli.main(["hub", "--settings", str(path)]) == 2
    err = capsys.readouterr().err
    assert "portal.proxy_api_url is set" in err and "$CONFIGPROXY_AUTH_TOKEN" in err


def test_the_api_on_its_own_gets_what_the_hub_would_give_a_service(tmp_path):
    settings = load_settings(_settings_file(tmp_path, **EXTERNAL))
    environ = {components.API_TOKEN_ENV: "api-token", "JUPYTERHUB_API_URL": "http://hub:8081/x"}
    components.standalone_api_environment(settings, environ)
    assert environ["JUPYTERHUB_API_TOKEN"] == "api-token"
    assert environ["JUPYTERHUB_API_URL"] == "http://hub:8081/x"  # what is set wins
    assert environ["JUPYTERHUB_SERVICE_PREFIX"] == "/services/portal/"
    assert environ["JUPYTERHUB_CLIENT_ID"] == "service-portal"
    fresh: dict[str, str] = {components.API_TOKEN_ENV: "api-token"}
    components.standalone_api_environment(settings, fresh)
    assert fresh["JUPYTERHUB_API_URL"] == "http://gpuaf-hub:8081/hub/api"


def test_hub_oauth_accepts_the_standalone_environment(tmp_path, monkeypatch):
    settings = load_settings(_settings_file(tmp_path, **EXTERNAL))
    environ = {components.API_TOKEN_ENV: "api-token"}
    components.standalone_api_environment(settings, environ)
    for key in ("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_OAUTH_ACCESS_SCOPES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    auth = components.service_auth(cache_max_age=60)
    assert auth.base_url == "/services/portal/"
    assert auth.api_token == "api-token"
    assert auth.oauth_client_id == "service-portal"
    assert auth.oauth_redirect_uri == "/services/portal/oauth_callback"
    assert auth.api_url == "http://gpuaf-hub:8081/hub/api"
    assert auth.access_scopes == {"access:services!service=portal"}


def test_the_api_on_its_own_without_a_token_says_which_variable(tmp_path):
    settings = load_settings(_settings_file(tmp_path, api_url="http://gpuaf-api:8091"))
    with pytest.raises(SettingsError, match=r"\$GPUAF_API_TOKEN"):
        components.standalone_api_environment(settings, {})
