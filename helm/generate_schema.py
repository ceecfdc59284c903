"""Write helm/values.schema.json: the chart's values, with ``settings`` generated from gpuaf.

The ``settings`` property is the JSON Schema of :class:`gpuaf.settings.Settings`, so the
chart refuses at ``helm install`` time what the hub would refuse at start (unknown keys,
wrong types, bad patterns). Two adjustments are made to the model's own schema:

* human units (``8h``, ``4G``) are accepted where the model accepts them: pydantic
  reports those fields as plain integers because a validator converts them first;
* ``iam.client_secret`` is left out: the client secret comes from an existing Secret
  (``iam.clientSecret``), never from the values, so it never lands in a ConfigMap.

Cross-field rules (profile kinds, declared groups, known GPU models) are not expressible
here; the hub checks them when it reads the settings.

Run ``.venv/bin/python helm/generate_schema.py`` after changing the settings model or
the chart's values; ``--check`` exits 1 if the file is out of date instead of writing it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gpuaf.settings import Settings
from gpuaf.units import duration_s, memory_mib

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "values.schema.json"
DEFINITIONS = "#/definitions/"

# What gpuaf.units accepts as text, written for ECMA-262 regular expressions.
DURATION_PATTERN = r"^\s*([0-9]+\s*[smhdSMHD]|[0-9]+:[0-5][0-9]:[0-5][0-9])\s*$"
MEMORY_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KMGTkmgt][Ii]?[Bb]?|[Bb])?\s*$"

UNIT_INPUTS: dict[Any, JsonSchemaValue] = {
    duration_s: {
        "anyOf": [
            {"type": "integer", "minimum": 1, "description": "seconds"},
            {
                "type": "string",
                "pattern": DURATION_PATTERN,
                "description": "e.g. 30m, 8h, 2d, 02:00:00",
            },
        ]
    },
    memory_mib: {
        "anyOf": [
            {"type": "integer", "minimum": 1, "description": "MiB"},
            {"type": "string", "pattern": MEMORY_PATTERN, "description": "e.g. 512M, 4G, 1.5T"},
        ]
    },
}


class ValuesSchema(GenerateJsonSchema):
    """Pydantic's generator, told what the unit validators take as input."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        func = schema["function"].get("function")
        if self.mode == "validation" and func in UNIT_INPUTS:
            return json.loads(json.dumps(UNIT_INPUTS[func]))
        return super().function_before_schema(schema)

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        # pydantic refuses a key that does not match the key pattern; say so here too
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out


def settings_schema() -> tuple[JsonSchemaValue, dict[str, JsonSchemaValue]]:
    """The ``settings`` property and the definitions it refers to."""
    schema = Settings.model_json_schema(
        ref_template=DEFINITIONS + "{model}", schema_generator=ValuesSchema, mode="validation"
    )
    definitions = schema.pop("$defs")
    iam = definitions["IAMSettings"]
    del iam["properties"]["client_secret"]
    del iam["properties"]["client_secret_file"]  # set by the chart from iam.clientSecret
    iam["description"] = (
        "The collaboration's IAM (OIDC). iam.client_secret is not a value "
        "of the chart: it comes from the Secret named in "
        "iam.clientSecret.existingSecret."
    )
    schema["description"] = (
        "The gpuaf settings document (the keys of "
        "gpuaf/settings.example.yaml), rendered into a ConfigMap."
    )
    return schema, definitions


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


def build_schema() -> JsonSchemaValue:
    """The whole values schema of the chart."""
    settings, definitions = settings_schema()
    properties: dict[str, JsonSchemaValue] = {
        "global": _free_object("Values shared with subcharts (none yet)."),
        "nameOverride": _string("Replaces the chart name in resource names."),
        "fullnameOverride": _string("Replaces the release-and-chart name of resources."),
        "image": _object(
            {
                "repository": _string("Image with gpuaf and configurable-http-proxy.", minLength=1),
                "tag": _string("Image tag; empty: the chart's appVersion."),
                "pullPolicy": {
                    "enum": ["Always", "IfNotPresent", "Never"],
                    "description": "Kubernetes image pull policy.",
                },
            },
            "The container image of the hub.",
            ["repository"],
        ),
        "imagePullSecrets": _list("Secrets for pulling the image, e.g. [{name: regcred}]."),
        "iam": _object(
            {
                "clientSecret": _object(
                    {
                        "existingSecret": _string(
                            "Name of an existing Secret in the release "
                            "namespace holding the IAM client secret."
                        ),
                        "key": _string("Key of that Secret.", minLength=1),
                    },
                    "Where the IAM client secret comes from; it is mounted as a file.",
                ),
            },
            "Deployment-side IAM values; the IAM settings themselves are in settings.iam.",
        ),
        "settings": settings,
        "service": _object(
            {
                "type": {
                    "enum": ["ClusterIP", "NodePort", "LoadBalancer"],
                    "description": "Service type of the public proxy.",
                },
                "port": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535,
                    "description": "Service port; it forwards to settings.portal.port.",
                },
                "annotations": _free_object("Annotations of the Service."),
            },
            "The Service in front of the public proxy.",
        ),
        "persistence": _object(
            {
                "enabled": {
                    "type": "boolean",
                    "description": "Keep settings.portal.data_dir on a PersistentVolumeClaim; "
                    "false: an emptyDir, lost with the pod.",
                },
                "existingClaim": _string("Use this PVC instead of creating one."),
                "storageClassName": {
                    "type": ["string", "null"],
                    "description": "Storage class; null: the cluster default.",
                },
                "accessModes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "description": "Access modes of the created PVC.",
                },
                "size": _string("Requested size of the created PVC.", minLength=1),
                "annotations": _free_object("Annotations of the created PVC."),
            },
            "The volume for settings.portal.data_dir: ledger (SQLite), hub database, "
            "cookie secret, local session homes.",
        ),
        "resources": _free_object(
            "Container resources (requests/limits) of the hub pod; "
            "sessions of the local backend run inside it."
        ),
        "nodeSelector": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Node labels the hub pod must match.",
        },
        "tolerations": _list("Tolerations of the hub pod."),
        "affinity": _free_object("Affinity rules of the hub pod."),
        "podAnnotations": _free_object("Extra annotations of the hub pod."),
        "podSecurityContext": _free_object("Pod-level securityContext."),
        "securityContext": _free_object("Container-level securityContext."),
        "extraVolumes": _list("Extra volumes of the hub pod."),
        "extraVolumeMounts": _list("Extra volume mounts of the hub container."),
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Values of the gpuaf Helm chart",
        "description": "Generated by helm/generate_schema.py; do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        "required": ["image", "iam", "settings"],
        "properties": properties,
        "definitions": definitions,
    }


def render() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run helm/generate_schema.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
