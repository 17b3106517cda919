"""Small helpers acting as a user would: kubectl and the kubernetes client against the test API server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client

from tests.support.kube import KubeCluster

GROUP, VERSION, PLURAL = "userservice.io", "v1alpha1", "userservices"
IMAGE = "registry.example/userservice:1.0.0"


def userservice(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": IMAGE,
        "database": {"secretRef": {"name": "db"}},
        "migrations": {"enabled": False},
        "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
    }
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "UserService",
        "metadata": {"name": name},
        "spec": body,
    }


def secret(name: str = "db", key: str = "url") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {key: "postgresql://u:p@db:5432/users"},
    }


def apply(cluster: KubeCluster, namespace: str, *docs: dict[str, Any]) -> None:
    cluster.kubectl(
        "-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(list(docs)), user="developer"
    )


def get(cluster: KubeCluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl(
        "-n", namespace, "get", kind, name, "-o", "json", "--show-managed-fields", check=False
    )
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    return dict(json.loads(result.stdout))


def must_get(cluster: KubeCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    obj = get(cluster, namespace, kind, name)
    assert obj is not None, f"{kind} {namespace}/{name} not found"
    return obj


def custom_objects(cluster: KubeCluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.client("developer"))


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    raise LookupError(f"no {ctype} condition yet")


def reconciled(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    """The UserService once its status describes its current generation."""
    obj = get(cluster, namespace, PLURAL, name)
    if obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def container(dep: dict[str, Any]) -> dict[str, Any]:
    return dict(dep["spec"]["template"]["spec"]["containers"][0])


def complete_job(cluster: KubeCluster, namespace: str, name: str, *, failed: bool = False) -> None:
    """Play the Job controller's part for a pod that cannot run here (no kubelet): mark the Job finished."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if failed:
        conds = [
            {
                "type": "FailureTarget",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": now,
            },
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": now,
            },
        ]
        status: dict[str, Any] = {"failed": 3, "active": 0, "ready": 0, "conditions": conds}
    else:
        conds = [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now},
        ]
        status = {"succeeded": 1, "active": 0, "ready": 0, "completionTime": now, "conditions": conds}
    cluster.kubectl(
        "-n",
        namespace,
        "patch",
        "job",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def resource_versions(cluster: KubeCluster, namespace: str) -> dict[str, str]:
    kinds = (
        "userservices,deployments,services,poddisruptionbudgets,horizontalpodautoscalers,jobs,"
        "serviceaccounts,networkpolicies,roles,rolebindings"
    )
    out = cluster.kubectl("-n", namespace, "get", kinds, "-o", "json").stdout
    return {
        f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"]
        for i in json.loads(out)["items"]
    }


CHILD_WRITE_REASONS = frozenset({"Created", "Applied", "Recreated", "Deleted"})


def child_write_events(cluster: KubeCluster, namespace: str) -> list[str]:
    """The operator's Events of writes to children in `namespace` (one per write), as "reason: message"."""
    out = cluster.kubectl("-n", namespace, "get", "events", "-o", "json").stdout
    return sorted(
        f"{e['reason']}: {e['message']}"
        for e in json.loads(out)["items"]
        if e.get("reportingComponent") == "userservice-operator" and e.get("reason") in CHILD_WRITE_REASONS
    )
