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
    out = operator_cluster.kubectl("explain", "usvc.spec.access.from.podSelector.matchExpressions").stdout
    assert "Label requirements" in out
    out = operator_cluster.kubectl("explain", "usvc.spec.auth.audience").stdout
    assert "userservice.io/NAMESPACE/NAME" in out
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
        (
            {"http": {"port": 9000}, "grpc": {"port": 9000}},
            "spec.http.port, spec.grpc.port and spec.management.port",
        ),
        (
            {"env": [{"name": "DATABASE_URL", "value": "x"}]},
            "spec.env must not set DATABASE_URL: the operator sets it from spec.database",
        ),
        ({"env": [{"name": "SHUTDOWN_GRACE_SECONDS", "value": "1"}]}, "spec.env must not set"),
        (
            {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
            "spec.env[1]: Duplicate value",
        ),
        ({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "set at most one of"),
        ({"resources": {"requests": {"cpu": "-1"}}}, "must be a quantity of 0 or more"),
        ({"resources": {"limits": {"memory": -1}}}, "must be a quantity of 0 or more"),
        (
            {
                "env": [
                    {
                        "name": "A",
                        "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "x"}},
                    }
                ]
            },
            'spec.env[0].valueFrom.resourceFieldRef.divisor: Invalid value: "x": must be a quantity',
        ),
        (
            {"autoscaling": {"maxReplicas": 3, "behavior": {"scaleUp": {"selectPolicy": "Fastest"}}}},
            "spec.autoscaling.behavior.scaleUp.selectPolicy",
        ),
        (
            {"autoscaling": {"maxReplicas": 3, "behavior": {"scaleDown": {"policies": [{"type": "Pods"}]}}}},
            "spec.autoscaling.behavior.scaleDown.policies[0].value: Required value",
        ),
        (
            {"pod": {"tolerations": [{"key": "k", "operator": "Sometimes"}]}},
            "spec.pod.tolerations[0].operator",
        ),
        (
            {"pod": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
            "operator Exists must not have a value",
        ),
        (
            {"pod": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}},
            "nodeSelectorTerms: Required value",
        ),
        (
            {
                "pod": {
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {"weight": 500, "podAffinityTerm": {"topologyKey": "zone"}}
                            ]
                        }
                    }
                }
            },
            "weight",
        ),
        ({"pod": {"affinity": {"nodeAffinitty": {}}}}, 'unknown field "spec.pod.affinity.nodeAffinitty"'),
        (
            {"pod": {"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]}},
            "topologyKey: Required value",
        ),
        (
            {"env": [{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            "either value or valueFrom",
        ),
        ({"env": [{"name": "A", "valueFrom": {}}]}, "valueFrom needs exactly one of"),
        (
            {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
            "spec.env[0].valueFrom.secretKeyRef.key: Required value",
        ),
        (
            {"podDisruptionBudget": {"maxUnavailable": 0}},
            "maxUnavailable must be a number of pods (1 or more)",
        ),
        ({"podDisruptionBudget": {"maxUnavailable": "0%"}}, "maxUnavailable must be"),
        (
            {"podDisruptionBudget": {"minAvailable": "100%"}},
            "minAvailable must be a number of pods (0 or more) or a percentage from 0% to 99%",
        ),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "minAvailable must be"),
        (
            {"replicas": 2, "podDisruptionBudget": {"minAvailable": 2}},
            "spec.podDisruptionBudget.minAvailable must be below the replicas",
        ),
        (
            {"autoscaling": {"minReplicas": 3, "maxReplicas": 5}, "podDisruptionBudget": {"minAvailable": 3}},
            "must be below the replicas",
        ),
        ({"image": ""}, "spec.image"),
        (
            {"slo": {"latency": {"objective": 99, "thresholdSeconds": 0.3}}},
            "thresholdSeconds must be a bucket bound of the request duration histogram",
        ),
        ({"slo": {"availability": {"objective": 100}}}, "spec.slo.availability.objective"),
        ({"slo": {"latency": {"objective": 99}}}, "spec.slo.latency.thresholdSeconds: Required value"),
        ({"env": [{"name": "AUTH_MODE", "value": "none"}]}, "spec.env must not set"),
        ({"env": [{"name": "TLS_KEY_FILE", "value": "/k"}]}, "spec.env must not set"),
        ({"management": {"port": 8080}}, "spec.management.port must differ"),
        ({"tls": {}}, "spec.tls.secretName: Required value"),
        ({"tls": {"secretName": "Not_A_Name"}}, "spec.tls.secretName"),
        ({"access": {"from": [{}]}}, "a peer needs a namespaceSelector, a podSelector or both"),
        (
            {"access": {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}},
            "In and NotIn need values",
        ),
        (
            {
                "access": {
                    "from": [
                        {
                            "podSelector": {
                                "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                            }
                        }
                    ]
                }
            },
            "Exists and DoesNotExist take none",
        ),
        (
            {"access": {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]}},
            'Unsupported value: "Near"',
        ),
        (
            {"access": {"from": [{"namespaceSelector": {"matchLabels": {"bad key!": "x"}}}]}},
            "every matchLabels key must be a label key",
        ),
        (
            {"access": {"from": [{"namespaceSelector": {"matchLabels": {"team": "not valid!"}}}]}},
            "spec.access.from[0].namespaceSelector.matchLabels.team",
        ),
        (
            {"access": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}},
            "ipBlock is not supported in spec.access.from",
        ),
        ({"monitoring": {"namespaceSelector": {"matchLabels": {"/x": "v"}}}}, "must be a label key"),
        ({"auth": {"cacheSeconds": -1}}, "spec.auth.cacheSeconds"),
        ({"auth": {"audience": ""}}, "spec.auth.audience"),
    ],
)
def test_api_refuses_bad_specs(operator_cluster: KubeCluster, spec: dict[str, object], message: str) -> None:
    body = userservice("bad", **spec)
    result = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("spec", "message", "unwanted"),
    [
        # the scale subresource checks spec.replicas itself: the schema does not say it again
        ({"replicas": -1}, ".spec.replicas: Invalid value: -1: should be a non-negative integer", "in body"),
        # the budget rule alone judges maxConnections
        (
            {"database": {"secretRef": {"name": "db"}, "maxConnections": 3}},
            "spec: Invalid value: spec.database.maxConnections is too small",
            "in body",
        ),
        # the message names the variable set, not every reserved one
        (
            {"env": [{"name": "FEATURE_X", "value": "on"}, {"name": "LOG_LEVEL", "value": "debug"}]},
            "spec.env[1].name: Invalid value: spec.env must not set LOG_LEVEL: the operator sets it from"
            " spec.logLevel",
            "DATABASE_URL",
        ),
        # ipBlock is known to the schema so that the refusal can say why
        (
            {"access": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}},
            "spec.access.from[0]: Invalid value: ipBlock is not supported in spec.access.from: callers are pods",
            "unknown field",
        ),
        # a quantity is explained, not answered with a regular expression
        (
            {"resources": {"requests": {"cpu": "lots"}}},
            'spec.resources.requests[cpu]: Invalid value: "lots": must be a quantity of 0 or more: a number with'
            " an optional suffix",
            "should match",
        ),
    ],
)
def test_api_refusals_say_what_is_wrong_once(
    operator_cluster: KubeCluster, spec: dict[str, object], message: str, unwanted: str
) -> None:
    body = userservice("bad", **spec)
    result = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
    )
    assert result.returncode != 0
    assert result.stderr.count("Invalid value") == 1, result.stderr
    assert message in result.stderr, result.stderr
    assert unwanted not in result.stderr, result.stderr


def test_api_accepts_full_scheduling_and_budgets(operator_cluster: KubeCluster) -> None:
    """The typed schemas take what Kubernetes takes: a realistic spec passes unchanged."""
    pod = {
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "users", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
                    ]
                }
            },
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "ok"}},
                        },
                    }
                ]
            },
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
    }
    spec = {
        "pod": pod,
        "resources": {"requests": {"cpu": "250m", "memory": "1.5Gi"}, "limits": {"cpu": 1, "memory": "2G"}},
        "autoscaling": {
            "minReplicas": 3,
            "maxReplicas": 6,
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                }
            },
        },
        "podDisruptionBudget": {"minAvailable": 2},
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    }
    body = userservice("ok", **spec)
    out = operator_cluster.kubectl(
        "-n", "default", "apply", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(body)
    ).stdout
    stored = yaml.safe_load(out)["spec"]
    assert stored["pod"] == pod
    assert stored["autoscaling"]["behavior"] == spec["autoscaling"]["behavior"]


def test_api_accepts_slo_on_a_bucket_bound(operator_cluster: KubeCluster) -> None:
    """Whole-number bounds are accepted as written (1 and 1.0 alike)."""
    for threshold in (0.25, 1, 5.0):
        body = userservice(
            "slo",
            slo={
                "availability": {"objective": 99.9},
                "latency": {"objective": 99, "thresholdSeconds": threshold},
            },
        )
        result = operator_cluster.kubectl(
            "-n", "default", "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(body), check=False
        )
        assert result.returncode == 0, result.stderr


def test_scale_is_refused_while_autoscaling(operator_cluster: KubeCluster) -> None:
    """The HPA owns the replica count: `kubectl scale usvc` would change nothing, so the API server says so."""
    ns = "default"
    operator_cluster.kubectl(
        "-n",
        ns,
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(userservice("autoscaled", autoscaling={"maxReplicas": 4})),
    )
    try:
        result = operator_cluster.kubectl(
            "-n", ns, "scale", "usvc", "autoscaled", "--replicas=5", check=False
        )
        assert result.returncode != 0
        assert "spec.replicas cannot change while spec.autoscaling.enabled is true" in result.stderr
        operator_cluster.kubectl(
            "-n", ns, "apply", "-f", "-", input=yaml.safe_dump(userservice("autoscaled", replicas=5))
        )  # autoscaling dropped in the same change: accepted
    finally:
        operator_cluster.kubectl("-n", ns, "delete", "usvc", "autoscaled", "--wait=false", check=False)


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
    assert spec["management"] == {"port": 9090}
    assert spec["access"] == {"from": [{"podSelector": {}}], "networkPolicy": {"enabled": True}}
    assert spec["auth"] == {"cacheSeconds": 10}
    assert spec["monitoring"]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    assert "tls" not in spec


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
        ("create", "roles.rbac.authorization.k8s.io", "yes"),  # each UserService's subscription Role
        ("bind", "roles.rbac.authorization.k8s.io", "no"),
        ("escalate", "roles.rbac.authorization.k8s.io", "no"),
        ("get", "usereventsubscriptions.userservice.io", "yes"),
        ("update", "usereventsubscriptions.userservice.io", "no"),
        ("create", "serviceaccounts", "yes"),
        ("patch", "networkpolicies.networking.k8s.io", "yes"),
        ("create", "tokenreviews.authentication.k8s.io", "no"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/userservice-access-reviewer", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", "no"),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", "no"),
        ("create", "clusterroles.rbac.authorization.k8s.io", "no"),
    ],
)
def test_operator_rbac_is_least_privilege(
    operator_cluster: KubeCluster, verb: str, resource: str, allowed: str
) -> None:
    """The rules of rbac.yaml as the API server evaluates them for the operator's user."""
    res, _, sub = resource.partition("/")
    if res.startswith("clusterroles."):  # a resource name, not a subresource
        res, sub = f"{res}/{sub}" if sub else res, ""
    args = ["auth", "can-i", verb, res, "-n", "default", "--as=userservice-operator"]
    if sub:
        args.append(f"--subresource={sub}")
    assert operator_cluster.kubectl(*args, check=False).stdout.strip() == allowed
