"""The access children: the ServiceAccount, its binding to the access-reviewer role, the NetworkPolicy, and
what the Deployment, Service and ServiceMonitor do under spec.auth, spec.tls and spec.access."""

from __future__ import annotations

from typing import Any

from tests.unit.operator.conftest import make_userservice
from userservice_operator.children import (
    CHILDREN,
    accessbinding,
    deployment,
    migration,
    networkpolicy,
    service,
    serviceaccount,
    servicemonitor,
)
from userservice_operator.children.common import ACCESS_REVIEWER_ROLE, owner_selector
from userservice_operator.crd import load_rbac
from userservice_operator.reconcile import child_owner

TLS = {"secretName": "alpha-tls"}


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_serviceaccount_mounts_its_token_and_the_pods_use_it() -> None:
    us = make_userservice()
    sa = serviceaccount.build(us)
    assert sa["kind"] == "ServiceAccount"
    assert sa["metadata"]["name"] == "alpha"
    assert sa["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    assert sa["automountServiceAccountToken"] is True
    pod = deployment.build(us)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "alpha"
    assert pod["automountServiceAccountToken"] is True
    # The migration Job talks to the database only: no token in its pod.
    job_pod = migration.build(us)["spec"]["template"]["spec"]
    assert job_pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in job_pod


def test_binding_names_its_owner_in_labels_and_binds_only_the_reviewer_role() -> None:
    us = make_userservice(name="alpha", namespace="team-a")
    crb = accessbinding.build(us)
    assert crb["kind"] == "ClusterRoleBinding"
    assert crb["metadata"]["name"] == "userservice-access-reviewer:team-a:alpha"
    assert "namespace" not in crb["metadata"]
    assert "ownerReferences" not in crb["metadata"]  # not allowed on a cluster-scoped object
    assert crb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": ACCESS_REVIEWER_ROLE,
    }
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "alpha", "namespace": "team-a"}]
    assert child_owner(crb) == ("team-a", "alpha")
    labels = crb["metadata"]["labels"]
    selector = dict(part.split("=") for part in owner_selector("team-a", "alpha").split(","))
    assert selector.items() <= labels.items()
    (row,) = [c for c in CHILDREN if c.kind == "ClusterRoleBinding"]
    assert not row.namespaced


def test_the_reviewer_role_may_create_token_and_access_reviews_only() -> None:
    (role,) = [d for d in load_rbac() if d["metadata"]["name"] == ACCESS_REVIEWER_ROLE]
    assert role["kind"] == "ClusterRole"
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    # The operator may bind exactly that role, and manage the bindings, only cluster-wide.
    (cluster,) = [d for d in load_rbac() if d["metadata"]["name"] == "userservice-operator-cluster"]
    bind = [r for r in cluster["rules"] if "bind" in r["verbs"]]
    assert bind == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": [ACCESS_REVIEWER_ROLE],
        }
    ]


def test_auth_env_defaults_to_the_per_instance_audience() -> None:
    env = {e["name"]: e.get("value") for e in _container(deployment.build(make_userservice()))["env"]}
    assert env["AUTH_MODE"] == "kubernetes"
    assert env["AUTH_AUDIENCE"] == "userservice.io/team-a/alpha"
    assert env["AUTH_NAMESPACE"] == "team-a"
    assert env["AUTH_CACHE_SECONDS"] == "10"
    assert env["MANAGEMENT_PORT"] == "9090"
    assert "TLS_CERT_FILE" not in env and "TLS_KEY_FILE" not in env
    custom = make_userservice(auth={"audience": "billing-users", "cacheSeconds": 0})
    env = {e["name"]: e.get("value") for e in _container(deployment.build(custom))["env"]}
    assert env["AUTH_AUDIENCE"] == "billing-users"
    assert env["AUTH_CACHE_SECONDS"] == "0"


def test_tls_mounts_the_secret_and_switches_probes_service_monitor_and_endpoints_to_https() -> None:
    us = make_userservice(tls=TLS)
    dep = deployment.build(us)
    c = _container(dep)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TLS_CERT_FILE"] == "/etc/userservice/tls/tls.crt"
    assert env["TLS_KEY_FILE"] == "/etc/userservice/tls/tls.key"
    assert {"name": "tls", "mountPath": "/etc/userservice/tls", "readOnly": True} in c["volumeMounts"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "alpha-tls"
    assert "items" not in volumes["tls"]["secret"]  # whole-Secret mount: renewals reach the files
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "management"
        assert c[probe]["httpGet"]["scheme"] == "HTTPS"
    sm = servicemonitor.build(us)
    assert sm is not None
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "management"
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "alpha-tls", "key": "ca.crt"}},
        "serverName": "alpha.team-a.svc",
    }
    assert service.endpoints(us)["http"] == "https://alpha.team-a.svc:8080"


def test_networkpolicy_fences_api_ports_to_access_from_and_management_to_monitoring() -> None:
    np = networkpolicy.build(make_userservice())
    assert np is not None
    assert np["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    spec = np["spec"]
    # the serving pods and the migration Job's (which admit nothing then)
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "userservice",
        "app.kubernetes.io/instance": "alpha",
    }
    for pods in (
        deployment.build(make_userservice())["spec"]["template"],
        migration.build(make_userservice())["spec"]["template"],
    ):
        assert spec["podSelector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()
    assert spec["policyTypes"] == ["Ingress"]
    api, mgmt = spec["ingress"]
    assert api == {
        "from": [{"podSelector": {}}],  # default: the UserService's own namespace
        "ports": [{"protocol": "TCP", "port": 8080}, {"protocol": "TCP", "port": 50051}],
    }
    assert mgmt == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9090}],
    }
    peers = [
        {
            "namespaceSelector": {"matchLabels": {"team": "billing"}},
            "podSelector": {"matchLabels": {"a": "b"}},
        }
    ]
    np = networkpolicy.build(
        make_userservice(
            access={"from": peers}, monitoring={"namespaceSelector": {"matchLabels": {"x": "prom"}}}
        )
    )
    assert np is not None
    assert np["spec"]["ingress"][0]["from"] == peers
    assert np["spec"]["ingress"][1]["from"] == [{"namespaceSelector": {"matchLabels": {"x": "prom"}}}]


def test_empty_access_from_admits_nobody_to_the_api_ports() -> None:
    """An ingress rule without `from` would admit every source: none is written instead."""
    np = networkpolicy.build(make_userservice(access={"from": []}))
    assert np is not None
    (only,) = np["spec"]["ingress"]
    assert only["ports"] == [{"protocol": "TCP", "port": 9090}]


def test_networkpolicy_off_only_when_asked() -> None:
    assert networkpolicy.build(make_userservice(access={"networkPolicy": {"enabled": False}})) is None
    assert networkpolicy.build(make_userservice(access={"from": [{"podSelector": {}}]})) is not None
