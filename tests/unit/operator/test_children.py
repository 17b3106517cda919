"""Each child builder is a pure function: UserService dict in, manifest out."""

from __future__ import annotations

from typing import Any

from tests.unit.operator.conftest import make_userservice
from userservice_operator.children import (
    deployment,
    hpa,
    migration,
    pdb,
    prometheusrule,
    service,
    servicemonitor,
    slo,
)
from userservice_operator.children.common import HASH_ANNOTATION, labels
from userservice_operator.children.context import BuildContext, RolloutPlan


def _owner_and_labels(obj: dict[str, Any], name: str = "alpha") -> None:
    meta = obj["metadata"]
    assert meta["namespace"] == "team-a"
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "userservice.io/v1alpha1",
        "kind": "UserService",
        "name": name,
        "uid": "1234-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for key in ("name", "instance", "component", "part-of", "managed-by"):
        assert f"app.kubernetes.io/{key}" in meta["labels"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "userservice-operator"
    assert HASH_ANNOTATION in meta["annotations"]


def test_deployment_shape() -> None:
    us = make_userservice()
    dep = deployment.build(us)
    _owner_and_labels(dep)
    spec = dep["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example/userservice:1.0.0"
    assert c["command"] == ["userservice"]
    assert c["args"] == ["serve"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": 8080,
        "grpc": 50051,
        "management": 9090,
    }
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "management", "scheme": "HTTP"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "management", "scheme": "HTTP"}
    env = {e["name"]: e for e in c["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "alpha-db", "key": "url"}
    assert env["HTTP_PORT"]["value"] == "8080"
    assert env["GRPC_PORT"]["value"] == "50051"
    assert env["SHUTDOWN_GRACE_SECONDS"]["value"] == "20"
    assert env["LOG_LEVEL"]["value"] == "info"
    sc = c["securityContext"]
    assert sc["runAsNonRoot"]
    assert sc["readOnlyRootFilesystem"]
    assert not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert pod["terminationGracePeriodSeconds"] == 20 + 5 + 5
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "userservice",
        "app.kubernetes.io/instance": "alpha",
        "app.kubernetes.io/component": "server",
    }
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"


def test_deployment_leaves_replicas_to_hpa_when_autoscaling() -> None:
    us = make_userservice(autoscaling={"maxReplicas": 5})
    assert "replicas" not in deployment.build(us)["spec"]
    assert (
        deployment.build(us, BuildContext(RolloutPlan(us.spec.image, 0, held=True)))["spec"]["replicas"] == 0
    )


def test_deployment_pod_settings_and_env_pass_through() -> None:
    us = make_userservice(
        pod={
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "annotations": {"a": "b"},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}
            ],
        },
        env=[{"name": "FOO", "value": "bar"}],
        shutdownGracePeriodSeconds=40,
        logLevel="debug",
    )
    dep = deployment.build(us)
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "k", "operator": "Exists"}]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "zone"
    assert dep["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    env = [e["name"] for e in pod["containers"][0]["env"]]
    assert env[-1] == "FOO"
    assert pod["terminationGracePeriodSeconds"] == 50


def test_deployment_hash_changes_with_spec_only() -> None:
    a = deployment.build(make_userservice())
    b = deployment.build(make_userservice())
    c = deployment.build(make_userservice(image="registry.example/userservice:2.0.0"))
    h = lambda d: d["metadata"]["annotations"][HASH_ANNOTATION]  # noqa: E731
    assert h(a) == h(b) != h(c)


def test_service() -> None:
    svc = service.build(make_userservice(http={"port": 9000}))
    _owner_and_labels(svc)
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 9000, "http"),
        ("grpc", 50051, "grpc"),
        ("management", 9090, "management"),
    ]
    assert service.endpoints(make_userservice()) == {
        "http": "http://alpha.team-a.svc:8080",
        "grpc": "alpha.team-a.svc:50051",
    }


def test_hpa_cpu_and_requests_per_second() -> None:
    assert hpa.build(make_userservice()) is None
    assert hpa.build(make_userservice(autoscaling={"maxReplicas": 4, "enabled": False})) is None
    obj = hpa.build(
        make_userservice(
            autoscaling={
                "minReplicas": 3,
                "maxReplicas": 9,
                "targetRequestsPerSecond": 50,
                "behavior": {"x": 1},
            }
        )
    )
    assert obj is not None
    _owner_and_labels(obj)
    spec = obj["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 9)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "alpha"}
    cpu, rps = spec["metrics"]
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert rps["pods"]["metric"]["name"] == hpa.REQUESTS_METRIC
    assert rps["pods"]["target"] == {"type": "AverageValue", "averageValue": "50"}
    assert spec["behavior"] == {"x": 1}


def test_pdb() -> None:
    obj = pdb.build(make_userservice())
    assert obj is not None
    _owner_and_labels(obj)
    assert obj["spec"]["maxUnavailable"] == 1
    obj = pdb.build(make_userservice(podDisruptionBudget={"minAvailable": "50%"}))
    assert obj is not None
    assert obj["spec"]["minAvailable"] == "50%"
    assert "maxUnavailable" not in obj["spec"]
    assert pdb.build(make_userservice(podDisruptionBudget={"enabled": False})) is None


def test_servicemonitor_and_rule() -> None:
    sm = servicemonitor.build(
        make_userservice(monitoring={"serviceMonitor": {"labels": {"release": "prom"}}})
    )
    assert sm is not None
    _owner_and_labels(sm)
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {"port": "management", "path": "/metrics", "interval": "30s", "scheme": "http"}
    ]
    rule = prometheusrule.build(make_userservice())
    assert rule is not None
    _owner_and_labels(rule)
    alerts = [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]
    assert "UserServiceDown" in alerts
    off = make_userservice(
        monitoring={"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}
    )
    assert servicemonitor.build(off) is None
    assert prometheusrule.build(off) is None


def test_migration_job() -> None:
    us = make_userservice()
    job = migration.build(us)
    _owner_and_labels(job)
    assert job["metadata"]["name"] == migration.job_name(us)
    assert job["metadata"]["name"].startswith("alpha-migrate-")
    assert len(job["metadata"]["name"]) <= 63
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["command"] == ["userservice"]
    assert c["args"] == ["migrate"]
    assert c["image"] == us.spec.image
    assert c["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "alpha-db"
    assert job["spec"]["backoffLimit"] == 2
    # the Job's pods never match the selector of the Service, PDB or Deployment
    selector = service.build(us)["spec"]["selector"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(pod_labels.get(k) == v for k, v in selector.items())


def test_new_image_gets_new_job_name() -> None:
    a = migration.job_name(make_userservice())
    b = migration.job_name(make_userservice())
    c = migration.job_name(make_userservice(image="registry.example/userservice:2.0.0"))
    assert a == b != c


def test_long_names_fit() -> None:
    us = make_userservice(name="a" * 40)
    assert len(migration.job_name(us)) <= 63
    assert len(labels(us, "server", "img@sha256:" + "f" * 64)["app.kubernetes.io/version"]) <= 63


def test_prestop_sleep_zero_leaves_the_hook_out() -> None:
    """A zero-second preStop sleep is valid only from Kubernetes 1.33; no hook means the same everywhere."""
    (c,) = deployment.build(make_userservice(preStopSleepSeconds=0))["spec"]["template"]["spec"]["containers"]
    assert "lifecycle" not in c
    (c,) = deployment.build(make_userservice(preStopSleepSeconds=1))["spec"]["template"]["spec"]["containers"]
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 1}}


def test_prometheusrule_carries_selector_labels() -> None:
    """A Prometheus (e.g. kube-prometheus-stack) loads only rules whose labels match its ruleSelector."""
    sm_labels = {"release": "prom"}
    inherited = prometheusrule.build(make_userservice(monitoring={"serviceMonitor": {"labels": sm_labels}}))
    assert inherited is not None and inherited["metadata"]["labels"]["release"] == "prom"
    own = prometheusrule.build(
        make_userservice(
            monitoring={"serviceMonitor": {"labels": sm_labels}, "prometheusRule": {"labels": {"rules": "x"}}}
        )
    )
    assert own is not None
    assert own["metadata"]["labels"]["rules"] == "x" and "release" not in own["metadata"]["labels"]
    none = prometheusrule.build(
        make_userservice(
            monitoring={"serviceMonitor": {"labels": sm_labels}, "prometheusRule": {"labels": {}}}
        )
    )
    assert none is not None and "release" not in none["metadata"]["labels"]
    # the operator's own labels always win
    assert own["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "userservice-operator"


def test_prometheusrule_alerts_only_where_their_inputs_exist() -> None:
    """No scrape, no rule; zero replicas on purpose, no availability alert (absent(up) would fire for ever)."""
    no_scrape = make_userservice(monitoring={"serviceMonitor": {"enabled": False}})
    assert prometheusrule.build(no_scrape) is None

    def alerts(**spec: Any) -> set[str]:
        rule = prometheusrule.build(make_userservice(**spec))
        assert rule is not None
        return {r["alert"] for r in rule["spec"]["groups"][0]["rules"]}

    assert "UserServiceDown" in alerts()
    assert "UserServiceDown" not in alerts(replicas=0)
    assert "UserServiceHighErrorRate" in alerts(replicas=0)
    # autoscaled: the HPA keeps at least minReplicas (>= 1) running
    assert "UserServiceDown" in alerts(replicas=0, autoscaling={"maxReplicas": 3})


def test_settings_that_cannot_change_the_schema_run_no_new_migration() -> None:
    """The Job's name (and so whether a new migration runs) follows the image and the database only."""
    base = {"env": [{"name": "FEATURE_X", "value": "on"}]}
    name = migration.job_name(make_userservice(**base))
    same = [
        {"logLevel": "debug"},
        {"env": [{"name": "FEATURE_X", "value": "off"}, {"name": "LOG_FORMAT", "value": "text"}]},
        {"migrations": {"enabled": True, "backoffLimit": 5, "activeDeadlineSeconds": 1200}},
        {"database": {"secretRef": {"name": "alpha-db"}, "maxConnections": 100}},
        {"replicas": 5, "resources": {"requests": {"cpu": "1"}}, "http": {"port": 8000}},
    ]
    for change in same:
        assert migration.job_name(make_userservice(**{**base, **change})) == name, change
    new = [
        {"image": "registry.example/userservice:2.0.0"},
        {"database": {"secretRef": {"name": "other-db"}}},
        {"database": {"secretRef": {"name": "alpha-db", "key": "dsn"}}},
        {"database": {"cloudNativePG": {"clusterName": "pg"}}},
        {"env": [{"name": "FEATURE_X", "value": "on"}, {"name": "PGSSLMODE", "value": "verify-full"}]},
    ]
    for change in new:
        assert migration.job_name(make_userservice(**{**base, **change})) != name, change


def test_alerts_link_the_runbooks_where_the_operator_is_told_they_are() -> None:
    rule = prometheusrule.build(make_userservice(), BuildContext(runbooks="https://docs.example/runbooks"))
    assert rule is not None
    urls = [r["annotations"]["runbook_url"] for r in rule["spec"]["groups"][0]["rules"]]
    assert urls and all(u == f"https://docs.example/runbooks#{u.rpartition('#')[2]}" for u in urls)


def test_error_budget_arithmetic() -> None:
    """99.9 % over 30 days: 0.05 % errors leave half the budget, 0.2 % overspend it twice over."""
    assert slo.budget(99.9) == "0.001" and slo.budget(99) == "0.01" and slo.budget(99.95) == "0.0005"
    assert abs(slo.budget_remaining(0.0005, 99.9) - 0.5) < 1e-9
    assert abs(slo.budget_remaining(0.002, 99.9) + 1) < 1e-9
    assert slo.le_label(1) == "1.0" and slo.le_label(0.0025) == "0.0025"
