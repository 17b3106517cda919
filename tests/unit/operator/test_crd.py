"""The CRD file: names, structural schema, defaults, subresources and CEL rules (tests/chart checks the chart's
copy)."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.unit.operator.conftest import apply_defaults, make_userservice, schema
from userservice.config import SETTINGS
from userservice.metrics import LATENCY_BUCKETS
from userservice_operator.children import deployment, migration
from userservice_operator.children.env import OPERATOR_ENV, reserved_env_validation
from userservice_operator.crd import CRD_NAME, load_crd, load_rbac
from userservice_operator.spec import UserService, UserServiceSpec, convert, json_name

ROOT = Path(__file__).resolve().parents[3]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, sub in (node.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def _plain(node: Any) -> Any:
    """The schema without Kubernetes extensions, for jsonschema."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def test_names_and_subresources() -> None:
    crd = load_crd()
    assert crd["metadata"]["name"] == CRD_NAME
    names = crd["spec"]["names"]
    assert names["kind"] == "UserService"
    assert names["shortNames"] == ["usvc"]
    assert names["categories"] == ["userservice"]  # not `all`: `kubectl get all` stays the built-in kinds
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Ready", "Replicas", "Image", "Age"} <= set(columns)


def test_schema_is_structural() -> None:
    """Every node has a type (or is int-or-string / preserve-unknown-fields)."""
    for path, node in _walk(schema()):
        if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        assert "type" in node, f"{path or '<root>'} has no type"


def test_every_spec_and_status_field_is_described() -> None:
    """`kubectl explain` and docs/operator.md's field reference read these descriptions."""
    root = schema()["properties"]
    undescribed = [
        path
        for part in ("spec", "status")
        for path, node in _walk(root[part], part)
        if not path.endswith(("[]", "{}")) and not node.get("description")
    ]
    assert undescribed == []


def test_no_field_accepts_anything() -> None:
    """Every object is typed down to its leaves: nothing is kept unvalidated."""
    assert [p for p, node in _walk(schema()) if node.get("x-kubernetes-preserve-unknown-fields")] == []


def test_conditions_follow_metav1_condition() -> None:
    conditions = schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    props = item["properties"]
    assert props["type"]["maxLength"] == 316 and "pattern" in props["type"]
    assert (
        props["reason"]["minLength"] == 1
        and props["reason"]["maxLength"] == 1024
        and "pattern" in props["reason"]
    )
    assert props["message"]["maxLength"] == 32768
    assert props["lastTransitionTime"]["format"] == "date-time"
    assert props["observedGeneration"]["minimum"] == 0


def test_cel_rules_present() -> None:
    spec = schema()["properties"]["spec"]
    rules = [r["rule"] for r in spec["properties"]["autoscaling"]["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert spec["x-kubernetes-validations"]


def test_sample_is_valid_and_defaults_fill_in() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/samples/usvc.yaml").read_text()))
    (sample,) = [d for d in docs if d and d["kind"] == "UserService"]
    jsonschema.validate(sample, _plain(schema()))
    defaulted = apply_defaults(schema(), sample)
    assert defaulted["spec"]["http"]["port"] == 8080
    assert defaulted["spec"]["grpc"]["port"] == 50051
    assert defaulted["spec"]["migrations"]["enabled"] is True


def test_bad_enum_is_refused_by_schema() -> None:
    bad = {"spec": {"image": "x", "database": {"secretRef": {"name": "s"}}, "logLevel": "loud"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _plain(schema()))


def test_rbac_has_no_wildcards_and_secrets_only_by_name() -> None:
    for doc in load_rbac():
        for rule in doc["rules"]:
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"]  # the referenced Secret by name; never list or watch them all


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside a field type (`X` or `X | None`), if any."""
    options = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return next((o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)), None)


def _typed_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _compare(cls: type, node: dict[str, Any], path: str) -> list[str]:
    """Mismatches between a dataclass's fields and its CRD schema node, recursively."""
    problems = []
    hints = typing.get_type_hints(cls)
    props = node.get("properties") or {}
    names = {json_name(f): f for f in dataclasses.fields(cls)}
    problems += [f"{path}.{name} is in the CRD, not in {cls.__name__}" for name in props if name not in names]
    for name, f in names.items():
        sub = props.get(name)
        if sub is None:
            problems.append(f"{path}.{name} of {cls.__name__} is not in the CRD")
            continue
        typed = _typed_default(f)
        nested = _dataclass_of(hints[f.name])
        if "default" in sub:
            if typed != convert(hints[f.name], sub["default"]):
                problems.append(f"{path}.{name}: CRD default {sub['default']!r}, typed default {typed!r}")
        elif typed is not dataclasses.MISSING:
            # No schema default: the typed default must mean "absent".
            absent = convert(nested, {}) if nested is not None and typed is not None else None
            if typed not in (None, (), {}) and typed != absent:
                problems.append(f"{path}.{name}: typed default {typed!r} but no CRD default")
        if nested is not None:
            problems += _compare(nested, sub, f"{path}.{name}")
    return problems


def test_every_schema_default_is_the_typed_default() -> None:
    """crd.yaml and spec.py state each default; they must agree field by field, and cover the same fields."""
    assert _compare(UserServiceSpec, schema()["properties"]["spec"], "spec") == []


def test_typed_spec_of_a_bare_manifest_matches_the_api_servers_defaults() -> None:
    bare = {
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"image": "i", "database": {"secretRef": {"name": "s"}}},
    }
    defaulted = apply_defaults(schema(), copy.deepcopy(bare))
    assert UserService.from_manifest(bare) == UserService.from_manifest(defaulted)


def test_env_reserves_every_name_the_operator_sets() -> None:
    """The CEL rule on each spec.env entry is derived from OPERATOR_ENV, which is what the builders set; its
    message names the variable set and where the operator takes its value from."""
    env = schema()["properties"]["spec"]["properties"]["env"]
    assert reserved_env_validation() in env["items"]["x-kubernetes-validations"]
    assert all(name in reserved_env_validation()["rule"] for name in OPERATOR_ENV)
    # names are unique: a list keyed by name
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    us = make_userservice(tls={"secretName": "tls"})  # every variable, the TLS pair included
    (container,) = deployment.build(us)["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in container["env"]} == set(OPERATOR_ENV)
    (job_container,) = migration.build(us)["spec"]["template"]["spec"]["containers"]
    assert {e["name"] for e in job_container["env"]} <= set(OPERATOR_ENV)


def test_listener_descriptions_put_the_management_paths_on_the_management_port() -> None:
    """The service serves /healthz, /readyz and /metrics on MANAGEMENT_PORT only; the CRD says so."""
    props = schema()["properties"]["spec"]["properties"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert path in props["management"]["description"]
        assert path in SETTINGS["management_port"].help
        for listener in ("http", "grpc"):
            assert path not in props[listener]["description"], (listener, path)


def test_slo_latency_thresholds_are_the_service_histogram_bounds() -> None:
    """The CRD's CEL list of latency thresholds is the service's bucket list (the operator cannot import the
    service, so the list is written in the CRD and kept equal here)."""
    props = schema()["properties"]["spec"]["properties"]["slo"]["properties"]["latency"]["properties"]
    (rule,) = props["thresholdSeconds"]["x-kubernetes-validations"]
    listed = rule["rule"].removeprefix("self in [").removesuffix("]")
    assert [float(x) for x in listed.split(",")] == list(LATENCY_BUCKETS)
    assert all("." in x for x in listed.split(",")), "CEL compares doubles: write 1.0, not 1"
    assert ", ".join(f"{b:g}" for b in LATENCY_BUCKETS) in " ".join(
        props["thresholdSeconds"]["description"].split()
    )
