"""The UserService field reference of docs/operator.md, from the CRD's schema (crd.yaml descriptions)."""

from __future__ import annotations

import json
from typing import Any

from hack.docgen.markers import cell, splice
from userservice_operator.crd import load_crd

PAGE = "docs/operator.md"
BLOCK = "UserService fields"
# Fields that mirror a Kubernetes API type: one row each (their description names the type), not every leaf.
KUBERNETES_TYPES = (
    "spec.autoscaling.behavior",
    "spec.pod.tolerations",
    "spec.pod.affinity",
    "spec.pod.topologySpreadConstraints",
    "spec.env[].valueFrom",
    "status.conditions",
)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"array of {_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return kind


def _rows(node: dict[str, Any], path: str) -> list[str]:
    rows = []
    for key, sub in (node.get("properties") or {}).items():
        here = f"{path}.{key}"
        default = f"`{json.dumps(sub['default'], separators=(',', ':'))}`" if "default" in sub else ""
        rows.append(f"| `{here}` | {_type(sub)} | {default} | {cell(str(sub.get('description', '')))} |")
        inner = sub.get("items") if sub.get("type") == "array" else sub
        if here not in KUBERNETES_TYPES and isinstance(inner, dict) and inner.get("properties"):
            rows += _rows(inner, f"{here}[]" if inner is not sub else here)
    return rows


def render(page: str) -> str:
    root = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    table = [
        "| field | type | default | description |",
        "|---|---|---|---|",
        *_rows(root["spec"], "spec"),
        *_rows(root["status"], "status"),
    ]
    return splice(page, BLOCK, "\n".join(table))
