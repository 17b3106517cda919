"""helm lint and helm template, offline: default values and every ci/*.yaml values file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.support import ALL_OPTIONS, CHART, CI_VALUES, OPERATOR_PKG, docs, helm_template, run
from tests.support.tools import project_tool
from userservice_operator.children.deployment import MIN_KUBERNETES

AGGREGATED_ROLES = sum(
    1
    for d in yaml.safe_load_all((OPERATOR_PKG / "rbac.yaml").read_text())
    if d
    and any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in d["metadata"].get("labels", {}))
)
ACCESS_ROLES = sum(
    1
    for d in yaml.safe_load_all((OPERATOR_PKG / "rbac.yaml").read_text())
    if d and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "access"
)
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=lambda v: v.name if isinstance(v, Path) else "defaults"
)
def test_helm_lint_strict(values: Path | None) -> None:
    args = [project_tool("helm"), "lint", "--strict", str(CHART)]
    if values is not None:
        args += ["--values", str(values)]
    run(*args)


def test_values_schema_refuses_bad_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("replicaCount: 0\nuserServices: [{name: Bad_Name, spec: {}}]\nnoSuchOption: 1\n")
    with pytest.raises(AssertionError, match="values don't meet the specifications of the schema"):
        helm_template(values=bad)


def test_defaults_render_the_operator_deployment() -> None:
    objs = docs(helm_template(release="userservice-operator", namespace="userservice-system"))
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            *["ClusterRole"] * (2 + AGGREGATED_ROLES + ACCESS_ROLES),
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "ConfigMap",
            "Pod",
        ]
    )
    for o in objs:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "userservice-operator"
        assert labels["app.kubernetes.io/instance"] == "userservice-operator"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "userservice-operator-0.1.0"
    (deploy,) = by_kind(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "userservice:0.1.0"
    assert container["command"] == ["userservice-operator"]
    assert "--all-namespaces" in container["args"]
    assert container["securityContext"] == RESTRICTED_CONTAINER
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    (dashboard,) = by_kind(objs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["userservice.json"])
    titles = " ".join(p["title"] for p in board["panels"])
    for word in (
        "requests",
        "error",
        "latency",
        "pool",
        "events",
        "Ready pods",
        "Reconciles",
        "objectives",
        "HPA",
    ):
        assert word.lower() in titles.lower(), word
    (test_pod,) = by_kind(objs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["spec"]["containers"][0]["securityContext"] == RESTRICTED_CONTAINER
    (binding,) = [
        o for o in by_kind(objs, "ClusterRoleBinding") if o["roleRef"]["name"] == "userservice-operator"
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "userservice-operator", "namespace": "userservice-system"}
    ]


def test_all_options_render() -> None:
    objs = docs(helm_template(values=ALL_OPTIONS))
    (deploy,) = by_kind(objs, "Deployment")
    assert deploy["metadata"]["name"] == "users-operator"
    assert deploy["spec"]["replicas"] == 3
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    # Namespaced rights only in the watched namespaces.
    rolebindings = {
        (o["metadata"].get("namespace"), o["roleRef"]["name"]) for o in by_kind(objs, "RoleBinding")
    }
    assert rolebindings == {
        ("team-a", "users-operator"),
        ("team-b", "users-operator"),
        ("ops", "users-operator-leader-election"),
    }
    assert [o["roleRef"]["name"] for o in by_kind(objs, "ClusterRoleBinding")] == ["users-operator-cluster"]
    (sm,) = by_kind(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    (rule,) = by_kind(objs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    for name in (
        "UserServiceOperatorReconcileErrors",
        "UserServiceGrpcHighErrorRate",
        "UserServiceGrpcHighLatency",
        "UserServicePodRestarting",
        "UserServiceFleetHttpHighErrorRate",
        "UserServiceFleetHttpHighLatency",
    ):
        assert name in alerts, name
    for alert in alerts.values():
        assert alert["expr"] and alert["for"] and alert["labels"]["severity"] in ("warning", "critical")
        assert alert["labels"]["team"] == "platform" and alert["annotations"]["summary"]
    (dashboard,) = by_kind(objs, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert {o["metadata"]["name"] for o in by_kind(objs, "UserService")} == {"users", "accounts"}


def test_userservices_from_values_match_the_crd_schema() -> None:
    crd = yaml.safe_load((OPERATOR_PKG / "crd.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    schema = version["schema"]["openAPIV3Schema"]
    objs = by_kind(docs(helm_template(values=ALL_OPTIONS)), "UserService")
    assert len(objs) == 2
    for obj in objs:
        assert obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        jsonschema.validate(obj, schema)
    users = next(o for o in objs if o["metadata"]["name"] == "users")
    # spec.image defaults to the chart's image; explicit values pass through.
    assert users["spec"]["image"].startswith("registry.example.com/userservice@sha256:")
    assert users["metadata"]["namespace"] == "team-a"
    accounts = next(o for o in objs if o["metadata"]["name"] == "accounts")
    assert accounts["spec"]["image"] == "registry.example.com/userservice:0.1.0"
    # A spec the CRD refuses is caught by the same check.
    broken = dict(users, spec={**users["spec"], "logLevel": 7})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_kube_version_claim_matches_what_the_children_need() -> None:
    """Chart.yaml's kubeVersion is the operator's MIN_KUBERNETES; helm refuses older clusters."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    major, minor = MIN_KUBERNETES
    assert chart["kubeVersion"] == f">={major}.{minor}.0-0"
    helm_template("--kube-version", f"{major}.{minor}.0")
    with pytest.raises(AssertionError, match="kubeVersion"):
        helm_template("--kube-version", f"{major}.{minor - 1}.9")
