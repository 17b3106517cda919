"""The UserService API itself: installed from the operator package, explained, and guarded by its schema."""

from __future__ import annotations

import pytest
import yaml

from tests.integration.operator.helpers import userservice
from tests.support.kube import KubeCluster

pytestmark = pytest.mark.needs_kube


def test_kubectl_explain_and_short_name(operator_cluster: KubeCluster) -> None:
    out = operator_cluster.kubectl("explain", "userservice.spec").stdout
    assert "independently scaled instance" not in out  # the kind's description is on the root, not spec
    assert "autoscaling" in out and "Desired state" in out
    out = operator_cluster.kubectl("explain", "usvc.spec.autoscaling.targetRequestsPerSecond").stdout
    assert "userservice_requests_per_second" in out
    resources = operator_cluster.kubectl("api-resources", "--api-group=userservice.io").stdout
    assert "usvc" in resources


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
        ),
        ({"logLevel": "loud"}, 'spec.logLevel: Unsupported value: "loud"'),
        ({"http": {"port": 9000}, "grpc": {"port": 9000}}, "spec.http.port and spec.grpc.port must differ"),
        ({"env": [{"name": "DATABASE_URL", "value": "x"}]}, "spec.env must not set DATABASE_URL"),
        ({"env": [{"name": "LOG_LEVEL", "value": "debug"}]}, "spec.env must not set DATABASE_URL, LOG_LEVEL"),
        ({"env": [{"name": "SHUTDOWN_GRACE_SECONDS", "value": "1"}]}, "spec.env must not set"),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.env[1]: Duplicate value",
        ),
        ({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "set at most one of"),
        ({"replicas": -1}, "spec.replicas: Invalid value: -1"),
        ({"image": ""}, "spec.image"),
    ],
)
def test_api_refuses_bad_specs(operator_cluster: KubeCluster, spec: dict[str, object], message: str) -> None:
    body = userservice("bad", **spec)
    result = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_api_refuses_missing_database_and_long_name(operator_cluster: KubeCluster) -> None:
    body = userservice("nodb")
    del body["spec"]["database"]
    result = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert "spec.database: Required value" in result.stderr
    long = userservice("x" * 41)
    result = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(long), check=False
    )
    assert "metadata.name must be at most 40 characters" in result.stderr


def test_defaults_applied_by_api_server(operator_cluster: KubeCluster) -> None:
    body = userservice("defaults")
    body["spec"] = {"image": "img:1", "database": {"secretRef": {"name": "db"}}}
    out = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(body)
    ).stdout
    spec = yaml.safe_load(out)["spec"]
    assert spec["replicas"] == 2
    assert spec["http"] == {"port": 8080}
    assert spec["grpc"] == {"port": 50051}
    assert spec["database"]["secretRef"]["key"] == "url"
    assert spec["migrations"]["enabled"] is True
    assert spec["monitoring"]["serviceMonitor"]["interval"] == "30s"
    assert spec["logLevel"] == "info"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "secrets", "yes"),
        ("watch", "secrets", "no"),
        ("list", "secrets", "no"),
        ("create", "secrets", "no"),
        ("update", "secrets", "no"),
        ("delete", "secrets", "no"),
        ("patch", "deployments.apps", "yes"),
        ("delete", "jobs.batch", "yes"),
        ("patch", "userservices.userservice.io/status", "yes"),
        ("delete", "userservices.userservice.io", "no"),
        ("create", "pods", "no"),
        ("create", "roles.rbac.authorization.k8s.io", "no"),
    ],
)
def test_operator_rbac_is_least_privilege(
    operator_cluster: KubeCluster, verb: str, resource: str, allowed: str
) -> None:
    """The rules of rbac.yaml as the API server evaluates them for the operator's user."""
    res, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, res, "-n", "default", "--as=userservice-operator"]
    if sub:
        args.append(f"--subresource={sub}")
    assert operator_cluster.kubectl(*args, check=False).stdout.strip() == allowed
