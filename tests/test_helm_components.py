"""The chart's components: hub, proxy, portal API, ledger database, HTCondor pool.

Rendered offline with helm-python-sdk (as in test_helm_chart.py); checks how the parts
are wired together: the shared tokens, the settings that make the hub leave the proxy
and the API to their own pods, the ledger's password, the pool's configuration.
"""

from __future__ import annotations

import base64
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from traitlets.config import Config

import gpuaf.hub.auth
from gpuaf.settings import ENV_VAR, load_settings

CHART = Path(__file__).resolve().parent.parent / "helm"
HTCONDOR = "htcondor-postgresql.yaml"
BAD_VALUES = Path(__file__).resolve().parent / "data" / "helm" / "bad-values.yaml"


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "examples" / name).read_text(encoding="utf-8"))


def _docs(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = chart.render(values, name="gpuaf", namespace="gpuaf")
    return [
        d for path, text in manifests.items() if path.endswith(".yaml")
        for d in yaml.safe_load_all(text) if d
    ]  # fmt: skip


def _get(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return _get(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _settings(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(_get(docs, "ConfigMap", "gpuaf-settings")["data"]["settings.yaml"])


def _ref(secret: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": secret, "key": key}}


@pytest.fixture(scope="module")
def split(chart: Any) -> list[dict[str, Any]]:
    return _docs(chart, _example(HTCONDOR))


def test_each_part_has_its_own_pod_and_services(split):
    deployments = {d["metadata"]["name"] for d in split if d["kind"] == "Deployment"}
    assert deployments == {"gpuaf-hub", "gpuaf-proxy", "gpuaf-api"}
    services = {d["metadata"]["name"]: d for d in split if d["kind"] == "Service"}
    assert set(services) == {
        "gpuaf-hub", "gpuaf-proxy-public", "gpuaf-proxy-api", "gpuaf-api", "gpuaf-postgresql"
    }  # fmt: skip
    for name, component in [("proxy-public", "proxy"), ("proxy-api", "proxy"), ("api", "api")]:
        selector = services[f"gpuaf-{name}"]["spec"]["selector"]
        assert selector["app.kubernetes.io/component"] == component
    assert services["gpuaf-hub"]["spec"]["type"] == "LoadBalancer"


def test_proxy_token_is_shared_by_hub_and_proxy(split):
    token = _ref("gpuaf-secret", "proxy-token")
    assert _env(_container(split, "gpuaf-hub"))["CONFIGPROXY_AUTH_TOKEN"] == token
    proxy = _container(split, "gpuaf-proxy")
    assert _env(proxy) == {"CONFIGPROXY_AUTH_TOKEN": token}
    assert "--api-port=8082" in proxy["command"]
    assert "--default-target=http://gpuaf-hub:8081" in proxy["command"]
    secret = _get(split, "Secret", "gpuaf-secret")["data"]
    assert set(secret) == {"proxy-token", "api-token", "cookie-secret", "crypt-key"}
    assert len(base64.b64decode(secret["cookie-secret"]).decode()) == 64
    int(base64.b64decode(secret["crypt-key"]), 16)  # hexadecimal, as JupyterHub wants


def test_hub_settings_say_the_proxy_and_api_run_on_their_own(split):
    portal = _settings(split)["portal"]
    assert portal["proxy_api_url"] == "http://gpuaf-proxy-api:8082"
    assert portal["api_url"] == "http://gpuaf-api:8091"
    assert portal["api_ip"] == portal["hub_ip"] == "0.0.0.0"
    assert portal["hub_connect_url"] == "http://gpuaf-hub.example.org:8081"  # the example's


def test_api_pod_gets_the_service_token_and_the_hub_in_the_cluster(split):
    api = _container(split, "gpuaf-api")
    assert api["command"] == ["gpuaf", "api", "--settings", "/etc/gpuaf/settings.yaml"]
    env = _env(api)
    assert env["GPUAF_API_TOKEN"] == _ref("gpuaf-secret", "api-token")
    assert _env(_container(split, "gpuaf-hub"))["GPUAF_API_TOKEN"] == env["GPUAF_API_TOKEN"]
    assert env["JUPYTERHUB_API_URL"] == "http://gpuaf-hub:8081/hub/api"
    pod = _get(split, "Deployment", "gpuaf-api")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "hub"


def test_api_pod_may_go_anywhere_with_a_read_write_many_volume(chart):
    values = _example(HTCONDOR) | {"persistence": {"accessModes": ["ReadWriteMany"]}}
    pod = _get(_docs(chart, values), "Deployment", "gpuaf-api")["spec"]["template"]["spec"]
    assert "affinity" not in pod


def test_ledger_password_comes_from_the_secret_never_a_configmap(split):
    ledger = _settings(split)["ledger"]
    assert ledger == {
        "url": "postgresql+psycopg://gpuaf@gpuaf-postgresql:5432/gpuaf",
        "password_file": "/etc/gpuaf-ledger/password",
    }
    password = base64.b64decode(_get(split, "Secret", "gpuaf-postgresql")["data"]["password"])
    for name in ("gpuaf-hub", "gpuaf-api"):
        pod = _get(split, "Deployment", name)["spec"]["template"]["spec"]
        volume = {v["name"]: v for v in pod["volumes"]}["ledger-password"]["secret"]
        assert volume["secretName"] == "gpuaf-postgresql"
        assert volume["items"] == [{"key": "password", "path": "password"}]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["ledger-password"] == "/etc/gpuaf-ledger"
    for configmap in (d for d in split if d["kind"] == "ConfigMap"):
        assert password.decode() not in str(configmap["data"])
    postgres = _get(split, "StatefulSet", "gpuaf-postgresql")["spec"]["template"]["spec"]
    assert _env(postgres["containers"][0])["POSTGRES_PASSWORD_FILE"].startswith("/etc/")
    assert postgres["volumes"][0]["secret"]["secretName"] == "gpuaf-postgresql"


def test_bundled_postgresql_only_when_enabled(chart):
    for values in (None, _example("external-postgresql.yaml")):
        docs = _docs(chart, values)
        assert not [d for d in docs if d["kind"] == "StatefulSet"]
        assert not [d for d in docs if "postgresql" in d["metadata"]["name"]]


def test_external_postgresql_password_from_the_named_secret(chart):
    docs = _docs(chart, _example("external-postgresql.yaml"))
    assert _settings(docs)["ledger"]["password_file"] == "/etc/gpuaf-ledger/password"
    pod = _get(docs, "Deployment", "gpuaf-hub")["spec"]["template"]["spec"]
    volume = {v["name"]: v for v in pod["volumes"]}["ledger-password"]["secret"]
    assert (volume["secretName"], volume["items"][0]["key"]) == ("gpuaf-ledger", "password")


def test_hub_and_api_reach_the_htcondor_pool(split):
    config = _get(split, "ConfigMap", "gpuaf-htcondor")["data"]["condor_config"]
    assert "CONDOR_HOST = condor-cm.example.org:9618" in config
    assert "SEC_TOKEN_DIRECTORY = /etc/gpuaf-htcondor/tokens.d" in config
    assert config.index("SEC_CLIENT_AUTH") < config.index("SEC_DEFAULT_ENCRYPTION = REQUIRED")
    for name in ("gpuaf-hub", "gpuaf-api"):
        pod = _get(split, "Deployment", name)["spec"]["template"]["spec"]
        assert _env(pod["containers"][0])["CONDOR_CONFIG"] == (
            "/etc/gpuaf-htcondor/config/condor_config"
        )
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["htcondor-config"] == "/etc/gpuaf-htcondor/config"
        assert mounts["htcondor-idtoken"] == "/etc/gpuaf-htcondor/tokens.d"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["htcondor-idtoken"]["secret"]["secretName"] == "gpuaf-condor-token"


def test_local_backend_keeps_one_pod_that_runs_proxy_and_api(chart):
    docs = _docs(chart)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == ["gpuaf-hub"]
    portal = _settings(docs)["portal"]
    assert not {"proxy_api_url", "api_url", "api_ip", "hub_connect_url"} & set(portal)
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert "CONFIGPROXY_AUTH_TOKEN" not in _env(_container(docs, "gpuaf-hub"))


def test_network_policies_guard_the_internal_ports(split):
    policies = {d["metadata"]["name"]: d["spec"] for d in split if d["kind"] == "NetworkPolicy"}
    assert set(policies) == {"gpuaf-proxy", "gpuaf-api", "gpuaf-postgresql"}
    api_port = policies["gpuaf-proxy"]["ingress"][1]
    assert api_port["ports"] == [{"port": "api"}]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in api_port["from"]] == ["hub"]  # fmt: skip
    postgres = policies["gpuaf-postgresql"]["ingress"][0]["from"]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in postgres} == {
        "hub",
        "api",
    }


def test_the_rendered_settings_make_a_hub_without_proxy_and_with_an_external_api(
    split, tmp_path, monkeypatch
):
    """The ConfigMap's settings.yaml through gpuaf's own jupyterhub_config.py."""
    data = _settings(split)
    data["portal"]["data_dir"] = str(tmp_path / "data")
    (tmp_path / "client-secret").write_text("secret\n")
    data["iam"]["client_secret_file"] = str(tmp_path / "client-secret")
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_settings(path).portal.api_url == "http://gpuaf-api:8091"
    doc = {"authorization_endpoint": "https://iam/a", "token_endpoint": "https://iam/t"}
    monkeypatch.setattr(gpuaf.hub.auth, "discover", lambda issuer, timeout=10.0: doc)
    monkeypatch.setenv("GPUAF_API_TOKEN", "from-the-secret")
    monkeypatch.setenv(ENV_VAR, str(path))
    config = Config()
    hub_config = Path(gpuaf.hub.auth.__file__).with_name("jupyterhub_config.py")
    runpy.run_path(str(hub_config), init_globals={"get_config": lambda: config})
    assert config.ConfigurableHTTPProxy.should_start is False
    assert config.ConfigurableHTTPProxy.api_url == "http://gpuaf-proxy-api:8082"
    (portal,) = [s for s in config.JupyterHub.services if s["name"] == "portal"]
    assert portal["url"] == "http://gpuaf-api:8091"
    assert portal["api_token"] == "from-the-secret"
    assert "command" not in portal


def test_a_bad_values_file_is_refused_by_the_schema(chart):
    """tests/data/helm/bad-values.yaml: what `helm install -f` would refuse, key by key."""
    helm = pytest.importorskip("helm_python")
    values = yaml.safe_load((BAD_VALUES).read_text(encoding="utf-8"))
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    for key in ("service", "prot", "password_file", "enabled"):
        assert key in str(refused.value)
    with pytest.raises(helm.HelmError):
        chart.render(values, name="gpuaf", namespace="gpuaf")
