"""The hand-written part of helm/values.schema.json: every value of the chart but ``settings``.

Loaded by helm/generate_schema.py, which adds ``settings`` from gpuaf's settings model.
"""

from __future__ import annotations

from typing import Any

JsonSchemaValue = dict[str, Any]


def _object(
    properties: dict[str, JsonSchemaValue], description: str = "", required: list[str] | None = None
) -> JsonSchemaValue:
    out: JsonSchemaValue = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if description:
        out["description"] = description
    if required:
        out["required"] = required
    return out


def _free_object(description: str) -> JsonSchemaValue:
    return {"type": "object", "description": description}


def _list(description: str) -> JsonSchemaValue:
    return {"type": "array", "items": {"type": "object"}, "description": description}


def _string(description: str, **extra: Any) -> JsonSchemaValue:
    return {"type": "string", "description": description, **extra}


def _port(description: str) -> JsonSchemaValue:
    return {"type": "integer", "minimum": 1, "maximum": 65535, "description": description}


def _image(what: str) -> JsonSchemaValue:
    return _object(
        {
            "repository": _string(f"Image with {what}.", minLength=1),
            "tag": _string("Image tag; empty: the chart's appVersion."),
            "pullPolicy": {
                "enum": ["Always", "IfNotPresent", "Never"],
                "description": "Kubernetes image pull policy.",
            },
        },
        f"The container image with {what}.",
        ["repository"],
    )


def _existing_secret(what: str, default_key: str) -> JsonSchemaValue:
    return _object(
        {
            "existingSecret": _string(
                f"Name of an existing Secret in the release namespace holding {what}; empty: none."
            ),
            "key": _string(f"Key of that Secret (default {default_key}).", minLength=1),
        },
        f"Where {what} comes from; it is mounted as a file, never put in a ConfigMap.",
    )


def _service(what: str, port: bool = True) -> JsonSchemaValue:
    properties: dict[str, JsonSchemaValue] = {
        "type": {
            "enum": ["ClusterIP", "NodePort", "LoadBalancer"],
            "description": f"Service type of {what}.",
        },
        "annotations": _free_object(f"Annotations of the Service of {what}."),
    }
    if port:
        properties["port"] = _port("Service port.")
    return _object(properties, f"The Service of {what}.")


def _placement(what: str, **extra: JsonSchemaValue) -> JsonSchemaValue:
    """resources, nodeSelector, tolerations, affinity, podAnnotations of one component."""
    return _object(
        {
            **extra,
            "resources": _free_object(f"Container resources (requests/limits) of {what}."),
            "nodeSelector": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": f"Node labels {what} must match.",
            },
            "tolerations": _list(f"Tolerations of {what}."),
            "affinity": _free_object(f"Affinity rules of {what}."),
            "podAnnotations": _free_object(f"Extra annotations of {what}."),
        },
        f"The pod of {what}.",
    )


def _storage_class() -> JsonSchemaValue:
    return {"type": ["string", "null"], "description": "Storage class; null: the cluster default."}


def chart_properties() -> dict[str, JsonSchemaValue]:
    """The chart's own values, everything but ``settings``."""
    hub = _placement("the hub", service=_service("the hub's API", port=False))
    hub["properties"]["resources"]["description"] += " Local-backend sessions run inside it."
    postgresql = _placement(
        "the bundled PostgreSQL",
        enabled={"type": "boolean", "description": "Run a PostgreSQL server for the ledger."},
        image=_image("PostgreSQL (the official postgres image)"),
        auth=_object(
            {
                "username": _string("Database user of gpuaf.", pattern=r"^[a-z_][a-z0-9_]*$"),
                "database": _string("Database of the ledger.", pattern=r"^[a-z_][a-z0-9_]*$"),
                "existingSecret": _string(
                    "Secret with the user's password (key password); empty: generated."
                ),
            },
            "The ledger's database user.",
        ),
        persistence=_object(
            {
                "size": _string("Size of the PVC.", minLength=1),
                "storageClassName": _storage_class(),
            },
            "The PVC of the database.",
        ),
        podSecurityContext=_free_object("Pod-level securityContext of PostgreSQL."),
    )
    del postgresql["properties"]["affinity"]
    return {
        "global": _free_object("Values shared with subcharts (none yet)."),
        "nameOverride": _string("Replaces the chart name in resource names."),
        "fullnameOverride": _string("Replaces the release-and-chart name of resources."),
        "image": _image("gpuaf and configurable-http-proxy, for the hub and the portal API"),
        "imagePullSecrets": _list("Secrets for pulling the image, e.g. [{name: regcred}]."),
        "iam": _object(
            {"clientSecret": _existing_secret("the IAM client secret", "client-secret")},
            "Deployment-side IAM values; the IAM settings themselves are in settings.iam.",
        ),
        "hub": hub,
        "proxy": _placement(
            "configurable-http-proxy (its own pod unless the backend is local)",
            image=_image("configurable-http-proxy"),
            service=_service("proxy-public, what users reach"),
        ),
        "api": _placement("the portal API (its own pod unless the backend is local)"),
        "ledger": _object(
            {
                "passwordSecret": _existing_secret(
                    "the password of settings.ledger.url's user", "password"
                )
            },
            "An external ledger database: the Secret with its password.",
        ),
        "postgresql": postgresql,
        "htcondor": _object(
            {
                "config": _string("More condor_config lines for the hub and the portal API."),
                "idtoken": _existing_secret("an IDTOKEN issued by the pool", "token"),
            },
            "The external HTCondor pool (settings.backend.kind htcondor).",
        ),
        "persistence": _object(
            {
                "enabled": {
                    "type": "boolean",
                    "description": "Keep settings.portal.data_dir on a PersistentVolumeClaim; "
                    "false: an emptyDir, lost with the pod (local backend only).",
                },
                "existingClaim": _string("Use this PVC instead of creating one."),
                "storageClassName": _storage_class(),
                "accessModes": {
                    "type": "array",
                    "items": {"enum": ["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]},
                    "minItems": 1,
                    "description": "Access modes of the created PVC.",
                },
                "size": _string("Requested size of the created PVC.", minLength=1),
                "annotations": _free_object("Annotations of the created PVC."),
            },
            "The volume for settings.portal.data_dir: ledger (SQLite), hub database, "
            "spool folders, local session homes.",
        ),
        "networkPolicy": _object(
            {"enabled": {"type": "boolean", "description": "Create the NetworkPolicies."}},
            "NetworkPolicies of the proxy's API, the portal API and the bundled PostgreSQL.",
        ),
        "podSecurityContext": _free_object("Pod-level securityContext of gpuaf and the proxy."),
        "securityContext": _free_object("Container-level securityContext of gpuaf and the proxy."),
        "extraVolumes": _list("Extra volumes of the hub and portal API pods."),
        "extraVolumeMounts": _list("Extra volume mounts of the hub and portal API containers."),
    }
