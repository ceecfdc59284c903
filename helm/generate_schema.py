"""Write helm/values.schema.json: the chart's values, with ``settings`` generated from gpuaf.

The ``settings`` property is the JSON Schema of :class:`gpuaf.settings.Settings`, so the
chart refuses at ``helm install`` time what the hub would refuse at start (unknown keys,
wrong types, bad patterns). Two adjustments are made to the model's own schema:

* human units (``8h``, ``4G``) are accepted where the model accepts them: pydantic
  reports those fields as plain integers because a validator converts them first;
* ``iam.client_secret`` is left out: the client secret comes from an existing Secret
  (``iam.clientSecret``), never from the values, so it never lands in a ConfigMap;
* the keys the chart sets itself (``CHART_SET``: where the proxy and the portal API are,
  the file of the ledger's password) are left out too.

The chart's other values are described by hand in ``helm/schema_values.py``.

Cross-field rules (profile kinds, declared groups, known GPU models) are not expressible
here; the hub checks them when it reads the settings.

Run ``.venv/bin/python helm/generate_schema.py`` after changing the settings model or
the chart's values; ``--check`` exits 1 if the file is out of date instead of writing it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gpuaf.settings import Settings
from gpuaf.units import duration_s, memory_mib

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "values.schema.json"
VALUES_PART = HERE / "schema_values.py"
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


# settings keys the chart sets itself, refused as values
CHART_SET = {
    "PortalSettings": ["proxy_api_url", "api_url", "api_ip"],
    "LedgerSettings": ["password_file"],
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
    for key in CHART_SET["PortalSettings"]:  # the chart sets these from the layout
        del definitions["PortalSettings"]["properties"][key]
    for key in CHART_SET["LedgerSettings"]:  # set from ledger.passwordSecret or postgresql
        del definitions["LedgerSettings"]["properties"][key]
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


def _chart_values() -> ModuleType:
    """helm/schema_values.py, the hand-written part, loaded by path (helm/ is no package)."""
    spec = importlib.util.spec_from_file_location("gpuaf_helm_schema_values", VALUES_PART)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_schema() -> JsonSchemaValue:
    """The whole values schema of the chart."""
    settings, definitions = settings_schema()
    properties = _chart_values().chart_properties()
    properties["settings"] = settings
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
