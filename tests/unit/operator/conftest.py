"""Helpers for the operator's unit tests: UserServices defaulted exactly as the CRD schema says."""

from __future__ import annotations

import copy
from typing import Any

from userservice_operator.crd import load_crd
from userservice_operator.spec import UserService


def schema() -> dict[str, Any]:
    result = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(result, dict)
    return result


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting (as the API server does it): missing properties with a default are set."""
    if isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in node:
        return [apply_defaults(node["items"], v) for v in value]
    return value


def make_manifest(name: str = "alpha", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    """A UserService as the API server stores it (schema defaults filled in)."""
    base_spec: dict[str, Any] = {
        "image": "registry.example/userservice:1.0.0",
        "database": {"secretRef": {"name": "alpha-db"}},
    }
    base_spec.update(spec)
    body = {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserService",
        "metadata": {"name": name, "namespace": namespace, "uid": "1234-uid", "generation": 3},
        "spec": base_spec,
    }
    return dict(apply_defaults(schema(), body))


def make_userservice(name: str = "alpha", namespace: str = "team-a", **spec: Any) -> UserService:
    """The typed UserService the builders take, from `make_manifest`."""
    return UserService.from_manifest(make_manifest(name, namespace, **spec))
