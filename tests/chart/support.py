"""Helpers of the chart tests: the chart's paths, helm/kubeconform lookup, rendering, and kubeconform schemas
generated from a real kube-apiserver's OpenAPI document (nothing is downloaded)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import project_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "userservice-operator"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
ALL_OPTIONS = CHART / "ci" / "all-options-values.yaml"
OPERATOR_PKG = ROOT / "operator" / "userservice_operator"


def run(*args: str, input: str | None = None, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        list(args),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def helm_template(
    *extra: str, values: Path | None = None, release: str = "rel", namespace: str = "ops"
) -> str:
    args = [project_tool("helm"), "template", release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    return run(*args, *extra)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


# --- kubeconform schemas from OpenAPI v2 ----------------------------------------------------------------

_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    t = schema.get("type")
    if isinstance(t, str):
        schema["type"] = [t, "null"]
    return schema


def _convert(node: Any) -> Any:
    """OpenAPI v2 schema -> strict JSON schema as kubeconform's -strict schemas are: objects refuse unknown
    fields (unless marked preserve-unknown-fields), int-or-string and quantities take both, null is allowed
    where a value may be left empty."""
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return {"oneOf": [{"type": ["string", "null"]}, {"type": "integer"}]}
    if "$ref" in node:
        return {"$ref": node["$ref"]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: _convert(v) for name, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _convert(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [_convert(v) for v in value]
        else:
            out[key] = value
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return _nullable(out)


def _refs(node: Any, acc: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            acc.add(ref.removeprefix("#/definitions/"))
        for v in node.values():
            _refs(v, acc)
    elif isinstance(node, list):
        for v in node:
            _refs(v, acc)


def write_kubeconform_schemas(openapi: dict[str, Any], out: Path) -> dict[str, Path]:
    """One standalone strict schema per kind: `<kind>-<group-first-label>-<version>.json` (kubeconform's
    {{ .ResourceKind }}{{ .KindSuffix }}). Returns {"group/version/Kind": path}."""
    defs: dict[str, Any] = openapi["definitions"]
    converted: dict[str, Any] = {}

    def conv(name: str) -> Any:
        if name not in converted:
            if name == _QUANTITY:
                converted[name] = {"oneOf": [{"type": ["string", "null"]}, {"type": "number"}]}
            elif name == _INT_OR_STRING:
                converted[name] = {"oneOf": [{"type": ["string", "null"]}, {"type": "integer"}]}
            else:
                converted[name] = _convert(defs[name])
        return converted[name]

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, definition in defs.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
            if version == "__internal" or kind in (
                "WatchEvent",
                "DeleteOptions",
                "Status",
                "APIResourceList",
            ):
                continue
            needed: set[str] = set()
            todo = [name]
            while todo:
                n = todo.pop()
                if n in needed or n not in defs:
                    continue
                needed.add(n)
                found: set[str] = set()
                _refs(defs[n], found)
                todo.extend(found - needed)
            root = dict(conv(name))
            root.pop("x-kubernetes-group-version-kind", None)
            root["definitions"] = {n: conv(n) for n in sorted(needed)}
            suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
            path = out / f"{kind.lower()}{suffix}.json"
            path.write_text(json.dumps(root))
            written[f"{group}/{version}/{kind}"] = path
    return written


def kubeconform(manifests: str, schema_dir: Path, *skip_kinds: str) -> list[dict[str, Any]]:
    """Validate with kubeconform (-strict) against the generated schemas only; returns its per-resource
    results. Fails on any invalid resource or any kind without a schema (unless in skip_kinds)."""
    args = [
        project_tool("kubeconform"),
        "-strict",
        "-summary",
        "-output",
        "json",
        "-verbose",
        "-schema-location",
        str(schema_dir / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
    ]
    if skip_kinds:
        args += ["-skip", ",".join(skip_kinds)]
    result = subprocess.run(
        [*args, "-"], input=manifests, capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(result.stdout or "{}")
    bad = [r for r in report.get("resources", []) if r.get("status") not in ("statusValid", "statusSkipped")]
    assert result.returncode == 0 and not bad, (
        f"kubeconform found problems:\n{json.dumps(bad, indent=1)}\n{result.stderr}"
    )
    return list(report.get("resources", []))
