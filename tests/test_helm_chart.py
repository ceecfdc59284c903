"""The Helm chart in helm/: schema, rendering, refusals and the IAM client secret.

The chart is rendered offline by helm-python-sdk (Helm 4 as a library, no `helm`
binary, no cluster); every manifest is checked against the Kubernetes API schemas by
kubernetes-validate; values are also checked against values.schema.json with
jsonschema, independently of Helm's own validator.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gpuaf.settings import Settings, load_settings
from gpuaf.units import duration_s, memory_mib

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# kubeVersion of Chart.yaml (>=1.28) and the newest schemas kubernetes-validate ships
KUBE_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
SECRET = "s3cr3t-value-that-must-not-leak"


# -- helpers -----------------------------------------------------------------
def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gpuaf_helm_generate_schema", CHART / "generate_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()


def _schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


def _defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of user values onto the defaults: maps merge, null deletes."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _example(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "examples" / name).read_text(encoding="utf-8"))


def _docs(manifests: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for path, text in manifests.items():
        if not path.endswith(".yaml"):
            continue
        out.extend(d for d in yaml.safe_load_all(text) if d)
    return out


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(docs, "Deployment")["spec"]["template"]["spec"]


def _settings_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "ConfigMap" and "settings.yaml" in d["data"]]
    return found


def _value_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the values the schema describes key by key."""
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if "properties" in sub:
            yield from _value_paths(sub, path + ".")
        else:
            yield path


@pytest.fixture(scope="module")
def helm() -> ModuleType:
    return pytest.importorskip(
        "helm_python",
        reason="helm-python-sdk is not installed: the chart cannot be rendered without it "
        "(pip install helm-python-sdk)",
    )


@pytest.fixture(scope="module")
def chart(helm: ModuleType) -> Iterator[Any]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def _render(chart: Any, values: dict[str, Any] | None = None) -> dict[str, str]:
    return chart.render(values, name="gpuaf", namespace="gpuaf")


# -- (a) the schema is generated from the settings model ---------------------
def test_values_schema_is_the_generated_one() -> None:
    assert (CHART / "values.schema.json").read_text(encoding="utf-8") == GENERATOR.render(), (
        "helm/values.schema.json is out of date: run .venv/bin/python helm/generate_schema.py"
    )


def test_values_schema_is_valid_draft07() -> None:
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)


def test_settings_schema_has_every_section_of_the_model() -> None:
    settings = _schema()["properties"]["settings"]
    assert set(settings["properties"]) == set(Settings.model_fields)
    assert settings["additionalProperties"] is False
    iam = _schema()["definitions"]["IAMSettings"]["properties"]
    assert "client_secret" not in iam
    assert set(iam) == set(Settings.model_fields["iam"].annotation.model_fields) - {
        "client_secret",
        "client_secret_file",
    }


@pytest.mark.parametrize("text", ["30s", "5m", "8h", "2d", " 12H ", "02:00:00", "100:59:59"])
def test_duration_pattern_accepts_what_the_settings_accept(text: str) -> None:
    duration_s(text)
    assert re.match(GENERATOR.DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["5 minutes", "8", "1w", "1:00", "00:60:00", "h"])
def test_duration_pattern_refuses_what_the_settings_refuse(text: str) -> None:
    with pytest.raises(ValueError):
        duration_s(text)
    assert not re.match(GENERATOR.DURATION_PATTERN, text)


@pytest.mark.parametrize("text", ["512M", "4G", "4GB", "4GiB", "1.5T", "2048", "8g", "1024K"])
def test_memory_pattern_accepts_what_the_settings_accept(text: str) -> None:
    memory_mib(text)
    assert re.match(GENERATOR.MEMORY_PATTERN, text)


@pytest.mark.parametrize("text", ["4 gigs", "G", "4X", "-1G", "4 G B"])
def test_memory_pattern_refuses_what_the_settings_refuse(text: str) -> None:
    with pytest.raises(ValueError):
        memory_mib(text)
    assert not re.match(GENERATOR.MEMORY_PATTERN, text)


# -- (b) the chart renders valid Kubernetes objects ---------------------------
VALUE_SETS = ["defaults", *(p.name for p in EXAMPLES)]


def _values(name: str) -> dict[str, Any] | None:
    return None if name == "defaults" else _example(name)


def test_examples_exist() -> None:
    assert {"external-postgresql.yaml", "htcondor-postgresql.yaml", "simulated-gpus.yaml"} <= {
        p.name for p in EXAMPLES
    }


@pytest.mark.parametrize("values_name", VALUE_SETS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_manifests_are_valid_kubernetes(
    chart: Any, values_name: str, kube_version: str
) -> None:
    docs = _docs(_render(chart, _values(values_name)))
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Deployment", "Secret", "Service"}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{doc['kind']} {doc['metadata']['name']} is not valid Kubernetes "
                f"{kube_version}: {exc.message} at {list(exc.path)}"
            )


@pytest.mark.parametrize("values_name", VALUE_SETS)
def test_chart_lints_clean(helm: ModuleType, values_name: str) -> None:
    report = helm.lint(str(CHART), _values(values_name), strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values_name", VALUE_SETS)
def test_rendered_settings_are_accepted_by_gpuaf(
    chart: Any, values_name: str, tmp_path: Path
) -> None:
    """What the ConfigMap holds is what `gpuaf hub` loads, cross-field rules included."""
    configmap = _settings_configmap(_docs(_render(chart, _values(values_name))))
    data = yaml.safe_load(configmap["data"]["settings.yaml"])
    if "client_secret_file" in data["iam"]:  # the mounted Secret, here a file of the test's
        (tmp_path / "client-secret").write_text("from-the-secret\n")
        data["iam"]["client_secret_file"] = str(tmp_path / "client-secret")
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = load_settings(path)
    assert settings.portal.host == "0.0.0.0"
    assert settings.data_dir == Path("/srv/gpuaf")
    if values_name == "external-postgresql.yaml":
        assert settings.ledger_url.startswith("postgresql+psycopg://gpuaf@")
        assert settings.ledger.password_file == Path("/etc/gpuaf-ledger/password")
    if values_name == "htcondor-postgresql.yaml":
        assert settings.backend.kind == "htcondor"
        assert settings.iam.client_secret.get_secret_value() == "from-the-secret"
        assert settings.ledger_url == "postgresql+psycopg://gpuaf@gpuaf-postgresql:5432/gpuaf"
        assert settings.portal.api_url == "http://gpuaf-api:8091"
    if values_name == "simulated-gpus.yaml":
        assert settings.backend.local.simulate_gpus


def test_deployment_runs_one_hub_with_settings_and_data(chart: Any) -> None:
    docs = _docs(_render(chart))
    deployment = _one(docs, "Deployment")
    assert deployment["metadata"]["name"] == "gpuaf-hub"
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["gpuaf", "hub", "--settings", "/etc/gpuaf/settings.yaml"]
    assert container["ports"][0]["containerPort"] == 8000
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"settings": "/etc/gpuaf", "data": "/srv/gpuaf"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["settings"]["configMap"]["name"] == "gpuaf-settings"
    claim = _one(docs, "PersistentVolumeClaim")
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    service = _one(docs, "Service")  # the hub pod runs the proxy: proxy-public selects it
    assert service["metadata"]["name"] == "gpuaf-proxy-public"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_settings_change_restarts_the_hub(chart: Any) -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        deployment = _one(_docs(_render(chart, values)), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    assert checksum(None) != checksum({"settings": {"sessions": {"start_timeout": "10m"}}})


def test_without_persistence_the_data_dir_is_an_emptydir(chart: Any) -> None:
    docs = _docs(_render(chart, {"persistence": {"enabled": False}}))
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in _pod(docs)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_existing_claim_is_used_and_none_created(chart: Any) -> None:
    docs = _docs(_render(chart, {"persistence": {"existingClaim": "site-data"}}))
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in _pod(docs)["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "site-data"


# -- (c) bad values are refused by the schema ---------------------------------
BAD_VALUES = {
    "unknown settings key": {"settings": {"portal": {"prot": 8000}}},
    "unknown settings section": {"settings": {"quotas": {}}},
    "wrong type": {"settings": {"portal": {"port": "eighty"}}},
    "port out of range": {"settings": {"portal": {"port": 70000}}},
    "bad duration": {"settings": {"sessions": {"start_timeout": "5 minutes"}}},
    "bad memory size": {
        "settings": {
            "profiles": [{"name": "cpu", "display_name": "CPU", "kind": "cpu", "memory": "lots"}]
        }
    },
    "unknown profile kind": {
        "settings": {"profiles": [{"name": "tpu", "display_name": "TPU", "kind": "tpu"}]}
    },
    "bad group name": {"settings": {"groups": {"not a group": {}}}},
    "unknown backend": {"settings": {"backend": {"kind": "pbs"}}},
    "client secret in the values": {"settings": {"iam": {"client_secret": SECRET}}},
    "unknown top-level key": {"replicas": 2},
    "wrong service type": {"proxy": {"service": {"type": "Ingress"}}},
    "old top-level service": {"service": {"type": "ClusterIP"}},
    "unknown hub key": {"hub": {"replicas": 2}},
    "key the chart sets": {"settings": {"portal": {"proxy_api_url": "http://proxy:8001"}}},
    "password file in the values": {"settings": {"ledger": {"password_file": "/run/pw"}}},
    "bad database user": {"postgresql": {"auth": {"username": "gpuaf; drop"}}},
    "postgresql not a boolean": {"postgresql": {"enabled": "yes"}},
    "bad access mode": {"persistence": {"accessModes": ["ReadMany"]}},
    "idtoken without a key": {"htcondor": {"idtoken": {"key": ""}}},
}


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(_defaults(), values), _schema(), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("values", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_helm_refuses_bad_values(helm: ModuleType, chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        _render(chart, values)


@pytest.mark.parametrize("values_name", VALUE_SETS)
def test_schema_accepts_good_values(values_name: str) -> None:
    jsonschema.validate(
        _merge(_defaults(), _values(values_name) or {}), _schema(), cls=jsonschema.Draft7Validator
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"portal": {"data_dir": "gpuaf-data"}}}, "must be an absolute path"),
        ({"settings": {"portal": {"host": "127.0.0.1"}}}, "must listen on 0.0.0.0"),
        ({"settings": {"portal": {"public_url": None}}}, "public_url is required"),
        (
            {"settings": {"ledger": {"url": "postgresql+psycopg://gpuaf:pw@db/gpuaf"}}},
            "contains a password",
        ),
        (
            {
                "postgresql": {"enabled": True},
                "settings": {"ledger": {"url": "postgresql+psycopg://gpuaf@db/gpuaf"}},
            },
            "not both",
        ),
        ({"ledger": {"passwordSecret": {"existingSecret": "pw"}}}, "settings.ledger.url is not"),
        ({"settings": {"backend": {"kind": "htcondor"}}}, "backend.htcondor.collector"),
        (
            {"settings": {"backend": {"kind": "slurm"}}, "persistence": {"enabled": False}},
            "keep persistence enabled",
        ),
    ],
)
def test_chart_refuses_settings_that_cannot_work_in_a_pod(
    helm: ModuleType, chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        _render(chart, values)


# -- (d) the client secret never reaches the ConfigMap ------------------------
def test_client_secret_is_mounted_from_the_existing_secret(chart: Any) -> None:
    docs = _docs(
        _render(chart, {"iam": {"clientSecret": {"existingSecret": "gpuaf-iam", "key": "secret"}}})
    )
    configmap = _one(docs, "ConfigMap")
    iam = yaml.safe_load(configmap["data"]["settings.yaml"])["iam"]
    assert "client_secret" not in iam
    assert iam["client_secret_file"] == "/etc/gpuaf-secrets/iam-client-secret"
    pod = _pod(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["iam-client-secret"]["secret"] == {
        "secretName": "gpuaf-iam",
        "defaultMode": 0o440,
        "items": [{"key": "secret", "path": "iam-client-secret"}],
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["iam-client-secret"]["mountPath"] == "/etc/gpuaf-secrets"
    assert mounts["iam-client-secret"]["readOnly"] is True
    assert "gpuaf-iam" not in str([c.get("env") for c in pod["containers"]])  # a file only


def test_no_secret_volume_without_an_existing_secret(chart: Any) -> None:
    pod = _pod(_docs(_render(chart)))
    assert "iam-client-secret" not in {v["name"] for v in pod["volumes"]}


def test_configmap_drops_a_client_secret_even_without_the_schema(
    helm: ModuleType, tmp_path: Path
) -> None:
    """`helm install --skip-schema-validation` must not put the secret in a ConfigMap."""
    unchecked = tmp_path / "gpuaf"
    shutil.copytree(CHART, unchecked, ignore=shutil.ignore_patterns("examples", "__pycache__"))
    (unchecked / "values.schema.json").unlink()
    with helm.Chart.load(str(unchecked)) as loaded:
        manifests = _render(loaded, {"settings": {"iam": {"client_secret": SECRET}}})
    configmap = _one(_docs(manifests), "ConfigMap")
    assert SECRET not in configmap["data"]["settings.yaml"]
    assert "client_secret" not in configmap["data"]["settings.yaml"]
    assert not any(SECRET in text for text in manifests.values())


# -- the chart's documentation -------------------------------------------------
def test_readme_documents_every_value_outside_settings() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    described = {
        k: v for k, v in _schema()["properties"].items() if k not in ("settings", "global")
    }
    missing = [p for p in _value_paths({"properties": described}) if f"| `{p}` |" not in readme]
    assert missing == [], f"helm/README.md lacks rows for {missing}"
